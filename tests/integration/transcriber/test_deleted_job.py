"""A deleted job and the transcriber: a message of a job deleted while queued is acked without
work; a job deleted while the engine runs completes nothing, announces nothing, and its late
uploads are handed back to the deletion."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from libs.jobs import deletion
from libs.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_progress import HeldFake
from tests.stack_fixtures import FIXTURES, eventually

pytestmark = pytest.mark.integration

AUDIO = (FIXTURES / "hello_campaign.wav").read_bytes()


async def _delete(pool: asyncpg.Pool, job_id: str) -> None:
    async with pool.acquire() as conn:
        made = await deletion.request(
            conn, uuid.UUID(job_id), api_key_id=None, requested_by="test", reason="api"
        )
    assert made is not None and made[1]


async def _results(pool: asyncpg.Pool, job_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.outbox WHERE (subject LIKE "
            "'transcribe.transcript.ready.%' OR subject LIKE 'transcribe.transcript.failed.%') "
            "AND convert_from(payload, 'UTF8') LIKE $1",
            f"%{job_id}%",
        )
    )


async def test_a_job_deleted_while_queued_is_acked_without_work(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        FakeOpenAIServer() as fake,
        harness.transcriber(settings, pool, fake) as (worker, store),
    ):
        job = await harness.make_job(pool, store, AUDIO)
        await _delete(pool, job.id)
        await worker.handle(harness.delivery(job.event))  # returns: the message is acked
    assert fake.requests == []
    assert await _results(pool, job.id) == 0


async def test_a_job_deleted_while_transcribing_records_and_announces_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        HeldFake() as fake,
        harness.transcriber(settings, pool, fake) as (worker, store),
    ):
        job = await harness.make_job(pool, store, AUDIO)
        running = asyncio.create_task(worker.handle(harness.delivery(job.event)))

        async def engine_called() -> bool:
            return len(fake.requests) == 1

        await eventually(engine_called, timeout=60)
        await _delete(pool, job.id)
        assert await deletion.finish(pool, store, uuid.UUID(job.id))  # audio gone already
        fake.permits.release()
        await asyncio.wait_for(running, 60)
        stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        late_txt = f"camp/transcriptions/txt/{stem}.txt"
        assert await store.exists(late_txt)  # uploaded after the deletion...
        row = await pool.fetchrow(
            "SELECT finished_at, object_keys FROM media_pipeline.job_deletions "
            "WHERE audio_file_id = $1",
            uuid.UUID(job.id),
        )
        assert row["finished_at"] is None and late_txt in row["object_keys"]  # ...handed back
        assert await deletion.finish(pool, store, uuid.UUID(job.id))
        assert not await store.exists(late_txt)
    assert await _results(pool, job.id) == 0
    state = await pool.fetchrow(
        "SELECT a.status, t.audio_file_id AS transcription FROM media_pipeline.audio_files a "
        "LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id WHERE a.id = $1",
        uuid.UUID(job.id),
    )
    assert state["status"] == "deleted" and state["transcription"] is None
