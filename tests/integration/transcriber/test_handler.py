"""The transcriber's handler on real Postgres and S3, the OpenAI engine on the fake server:
idempotency, replays with and without force, every failure class and what it leaves behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from libs.bus import Pause, Reject, Retry
from libs.contracts import audio_stored_decoder
from libs.jobs import record
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.integration.transcriber import harness
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

SPEECH = (Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav").read_bytes()


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    """A database of its own: the handler re-publishes jobs through the outbox, and the session's
    running stack must not pick them up and change their state under the assertions."""
    ours = replace(settings, database_url=await create_database(postgres_server, "tx"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text="hello this is a test") as server:
        yield server


async def test_replay_without_force_is_acked_without_work_and_force_redoes_it(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["text"], state["ready_events"]) == (
            "completed",
            "hello this is a test",
            1,
        )
        # Redelivered and replayed (a new event id) alike: no request, no second event.
        await worker.handle(harness.delivery(job.event, attempt=2))
        replay = msgspec.structs.replace(job.event, event_id="replayed-1")
        await worker.handle(harness.delivery(replay))
        assert len(fake.requests) == 1
        assert (await harness.job_state(pool, job.id))["ready_events"] == 1

        fake.fixed_text = "forced again"
        await worker.handle(harness.delivery(msgspec.structs.replace(job.event, force=True)))
        state = await harness.job_state(pool, job.id)
        assert len(fake.requests) == 2
        assert (state["text"], state["ready_events"]) == ("forced again", 2)
        # One row per audio file, whatever happened.
        rows = await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.transcriptions WHERE audio_file_id = $1::uuid",
            job.id,
        )
        assert rows == 1


async def test_every_output_format_is_stored_at_the_reference_paths(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        await worker.handle(harness.delivery(job.event))
        stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        for fmt in ("json", "txt", "srt", "vtt"):
            body = await store.get_bytes(f"camp/transcriptions/{fmt}/{stem}.{fmt}")
            assert body
        srt = (await store.get_bytes(f"camp/transcriptions/srt/{stem}.srt")).decode()
        assert srt.startswith("1\n00:00:00,000 --> ")
        state = await harness.job_state(pool, job.id)
        assert state["raw_response"]["text"] == "hello this is a test"
        assert fake.requests[0].timestamp_granularities == ["segment"]


async def test_words_only_when_asked(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        plain = await harness.make_job(pool, store, SPEECH)
        worded = await harness.make_job(pool, store, SPEECH, timestamps="word")
        await worker.handle(harness.delivery(plain.event))
        await worker.handle(harness.delivery(worded.event))
        stem = worded.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        body = msgspec.json.decode(await store.get_bytes(f"camp/transcriptions/json/{stem}.json"))
        assert [w["word"] for w in body["words"]] == ["hello", "this", "is", "a", "test"]
        stem = plain.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        body = msgspec.json.decode(await store.get_bytes(f"camp/transcriptions/json/{stem}.json"))
        assert body["words"] is None
        assert [r.timestamp_granularities for r in fake.requests] == [
            ["segment"],
            ["segment", "word"],
        ]


@pytest.mark.parametrize(
    ("model", "response_format"),
    [
        ("gpt-4o-transcribe", "json"),
        ("gpt-4o-mini-transcribe", "json"),
        ("whisper-1", "verbose_json"),
    ],
)
async def test_model_is_chosen_per_job(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: FakeOpenAIServer,
    model: str,
    response_format: str,
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH, model=model)
        await worker.handle(harness.delivery(job.event))
        assert (fake.requests[0].model, fake.requests[0].response_format) == (
            model,
            response_format,
        )
        row = await pool.fetchrow(
            "SELECT model, engine FROM media_pipeline.transcriptions WHERE audio_file_id = $1::uuid",
            job.id,
        )
        assert row is not None and (row["model"], row["engine"]) == (model, "openai")


async def test_offline_model_always_means_the_local_engine(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH, model="offline")
        await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        assert not fake.requests
        assert "campaign" in state["text"]


async def test_rate_limit_waits_the_servers_retry_after_and_keeps_the_cooldown(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.rate_limited(retry_after=30))
        with pytest.raises(Retry) as raised:
            await worker.handle(harness.delivery(job.event))
        assert raised.value.delay == 30
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["failure"], state["error_code"]) == (
            "queued",
            "transient",
            "rate_limited",
        )
        # Back early (a replay, another pool): not retried before the cooldown ends.
        with pytest.raises(Retry, match="cooling down") as early:
            await worker.handle(harness.delivery(job.event, attempt=2))
        # Generous bounds: a loaded CI machine may take seconds between the two calls.
        assert early.value.delay is not None and 10 < early.value.delay <= 30
        assert len(fake.requests) == 1
        # A force replay does not wait.
        await worker.handle(harness.delivery(msgspec.structs.replace(job.event, force=True)))
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["failure"]) == ("completed", None)


async def test_absurd_retry_after_is_clamped(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.unavailable(retry_after=86400))
        with pytest.raises(Retry) as raised:
            await worker.handle(harness.delivery(job.event))
        assert raised.value.delay == 900.0


async def test_server_error_on_the_last_attempt_fails_the_job_once(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.server_error())
        with pytest.raises(Retry) as raised:
            await worker.handle(harness.delivery(job.event))
        assert raised.value.delay is not None and 1.5 <= raised.value.delay <= 2.5
        fake.fail_next(Fault.server_error(retry_after=0))
        with pytest.raises(Reject):
            await worker.handle(harness.delivery(job.event, attempt=10, max_deliver=10))
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["failure"], state["failed_events"]) == (
            "failed",
            "permanent",
            1,
        )


async def test_invalid_media_fails_permanently_and_replays_skip_it(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.undecodable())
        with pytest.raises(Reject):
            await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["error_code"], state["failed_events"]) == (
            "failed",
            "invalid_media",
            1,
        )
        await worker.handle(harness.delivery(job.event, attempt=2))  # --skip-failed
        assert len(fake.requests) == 1
        await worker.handle(harness.delivery(msgspec.structs.replace(job.event, force=True)))
        assert (await harness.job_state(pool, job.id))["status"] == "completed"


async def test_timeouts_are_transient(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake, timeout=0.5) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.hang(5))
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(job.event))
        assert (await harness.job_state(pool, job.id))["error_code"] == "timeout"


async def test_rejected_credentials_pause_with_a_probe_and_requeue_the_last_attempt(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        fake.fail_next(Fault.unauthorized())
        with pytest.raises(Pause) as paused:
            await worker.handle(harness.delivery(job.event))
        assert not paused.value.requeued and paused.value.probe is not None
        # The key works again (only that one request was refused).
        assert await paused.value.probe()
        before = await pool.fetchval("SELECT count(*) FROM media_pipeline.outbox")
        fake.fail_next(Fault.forbidden())
        with pytest.raises(Pause) as last:
            await worker.handle(harness.delivery(job.event, attempt=10, max_deliver=10))
        assert last.value.requeued
        rows = await pool.fetch(
            "SELECT payload FROM media_pipeline.outbox WHERE id > (SELECT max(id) - 5"
            " FROM media_pipeline.outbox) AND subject LIKE 'transcribe.audio.stored.%'"
        )
        copies = [audio_stored_decoder.decode(r["payload"]) for r in rows]
        copies = [c for c in copies if c.audio_file_id == job.id]
        assert len(copies) == 1 and copies[0].event_id != job.event.event_id
        assert await pool.fetchval("SELECT count(*) FROM media_pipeline.outbox") > before
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["failure"], state["failed_events"]) == (
            "queued",
            "transient",
            0,
        )


async def test_probe_stays_false_while_the_key_is_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        FakeOpenAIServer(api_key="sk-the-right-one") as fake,
        harness.transcriber(settings, pool, fake, api_key="sk-revoked") as (worker, store),
    ):
        job = await harness.make_job(pool, store, SPEECH)
        with pytest.raises(Pause) as paused:
            await worker.handle(harness.delivery(job.event))
        assert paused.value.probe is not None
        assert not await paused.value.probe()


async def test_default_pool_leaves_tenants_with_dedicated_pools_alone(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake, skip_tenants=("vip/calls",)) as (
        worker,
        store,
    ):
        vip = await harness.make_job(pool, store, SPEECH, tenant="vip/calls")
        other = await harness.make_job(pool, store, SPEECH)
        await worker.handle(harness.delivery(vip.event))
        await worker.handle(harness.delivery(other.event))
        assert (await harness.job_state(pool, vip.id))["status"] == "queued"
        assert (await harness.job_state(pool, other.id))["status"] == "completed"
        assert len(fake.requests) == 1


async def test_the_jobs_prompt_reaches_the_engine_and_survives_a_rerun(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    prompt = "Acme Telecom, SuperSaver 5G"
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET prompt = $2 WHERE id = $1::uuid", job.id, prompt
        )
        # A rerun (or requeue) builds its event from the row: the prompt comes along.
        loaded = await record.load(pool, uuid.UUID(job.id))
        assert loaded is not None
        event = record.audio_stored_event(loaded)
        assert event.prompt == prompt
        await worker.handle(harness.delivery(event))
    assert [r.prompt for r in fake.requests] == [prompt]
    state = await harness.job_state(pool, job.id)
    assert state["status"] == "completed"
