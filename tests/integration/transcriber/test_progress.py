"""Progress of a long recording: /status moves chunk by chunk while the job runs (the engine is
held between chunks, so the test sees every step), JobProgress events are rate-limited per job
and announce each stage change, and a job that is not running takes no progress."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web

from libs.contracts import JobProgress, subjects
from libs.jobs import progress, views
from libs.settings import Settings
from services.ingest.status import status_body
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.longaudio import SplitPolicy
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_long_audio import long_recording
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration

HOUR = SplitPolicy(chunk_seconds=600, search_seconds=60, overlap_seconds=1.0, chunk_concurrency=1)


class HeldFake(FakeOpenAIServer):
    """Answers one transcription per permit the test hands out (with its canned text: decoding
    an hour of chunks in the test's own loop would only measure the fake)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.permits = asyncio.Semaphore(0)

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        await self.permits.acquire()
        return await super()._answer(request, record)


@pytest.fixture
async def held() -> AsyncIterator[HeldFake]:
    async with HeldFake() as server:
        yield server


async def _status(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    key_id = await pool.fetchval(
        "SELECT api_key_id FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(job_id)
    )
    row = await views.status(pool, uuid.UUID(job_id), key_id)
    assert row is not None
    body: dict[str, Any] = msgspec.to_builtins(status_body(row))
    return body


async def _events(pool: asyncpg.Pool, job_id: str) -> list[JobProgress]:
    rows = await pool.fetch(
        "SELECT payload FROM media_pipeline.outbox WHERE subject LIKE $1 ORDER BY id",
        f"{subjects.JOB_PROGRESS}.%",
    )
    events = [msgspec.json.decode(r["payload"], type=JobProgress) for r in rows]
    return [e for e in events if e.audio_file_id == job_id]


async def test_a_one_hour_recording_shows_progress_moving_while_it_runs(
    settings: Settings, pool: asyncpg.Pool, held: HeldFake
) -> None:
    audio, _ = long_recording(60, seed=3)  # an hour (and a bit), in chunks of ~10 minutes
    limits = msgspec.structs.replace(LIMITS, max_seconds=600.0)
    async with harness.transcriber(settings, pool, held, split_policy=HOUR, limits=limits) as (
        worker,
        store,
    ):
        job = await harness.make_job(pool, store, audio)
        before = (await _status(pool, job.id))["metadata"]["progress"]
        assert (before["stage"], before["fraction"]) == ("queued", 0.0)
        running = asyncio.create_task(worker.handle(harness.delivery(job.event)))
        seen = []
        chunks = 6  # at least: the first report says how many
        step = 0
        while step < chunks:

            async def at(step: int = step) -> dict[str, Any] | None:
                shown = (await _status(pool, job.id))["metadata"].get("progress") or {}
                return shown if shown.get("chunk") == step else None

            shown = await eventually(at, timeout=120)
            seen.append((shown["stage"], shown["chunk"], shown["chunks"], shown["fraction"]))
            chunks = shown["chunks"]
            held.permits.release()
            step += 1
        await asyncio.wait_for(running, 120)
    assert chunks >= 6
    assert seen == [("transcribing", n, chunks, round(n / chunks, 4)) for n in range(chunks)]
    done = await _status(pool, job.id)
    assert done["status"] == "completed"
    assert (done["metadata"]["progress"]["stage"], done["metadata"]["progress"]["fraction"]) == (
        "completed",
        1.0,
    )
    events = await _events(pool, job.id)
    # Rate-limited: the first report and every stage change, not one per chunk necessarily.
    assert events[0].stage == "transcribing" and events[0].chunk == 0
    assert (events[-1].stage, events[-1].chunk, events[-1].fraction) == ("rendering", chunks, 1.0)
    assert 2 <= len(events) <= chunks + 1
    assert [e.chunk for e in events] == sorted(e.chunk for e in events)
    assert all(e.tenant == job.tenant for e in events)


async def test_progress_is_rate_limited_per_job_and_only_for_running_jobs(
    settings: Settings, pool: asyncpg.Pool, held: HeldFake
) -> None:
    async with harness.transcriber(settings, pool, held) as (_, store):
        job = await harness.make_job(pool, store, b"RIFF0000WAVE")
    job_id = uuid.UUID(job.id)

    async def report(chunk: int, stage: str = "transcribing", **kw: Any) -> bool:
        return await progress.report(
            pool, job_id=job_id, tenant=job.tenant, stage=stage, chunk=chunk, chunks=10, **kw
        )

    assert not await report(1)  # queued: not running, nothing written
    assert await _events(pool, job.id) == []
    await pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'processing' WHERE id = $1", job_id
    )
    assert await report(1)  # the first: an event
    assert not await report(2)  # within the interval: the status moves, no event
    shown = (await _status(pool, job.id))["metadata"]["progress"]
    assert (shown["chunk"], shown["fraction"]) == (2, 0.2)
    assert await report(3, min_interval=0.0)  # the interval passed
    assert await report(10, stage="rendering")  # a stage change always announces itself
    assert [(e.stage, e.chunk) for e in await _events(pool, job.id)] == [
        ("transcribing", 1),
        ("transcribing", 3),
        ("rendering", 10),
    ]
    await pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'deleted' WHERE id = $1", job_id
    )
    assert not await report(10, force_event=True)
    assert len(await _events(pool, job.id)) == 3
