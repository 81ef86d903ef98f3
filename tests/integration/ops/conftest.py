"""Fixtures for the operations tests: the dead-letter service running beside `running_stack`,
and jobs made directly in Postgres (with or without their AudioStored going out)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs import outbox
from libs.contracts import subjects
from libs.jobs import record, submission
from libs.settings import Settings

FIXTURES_WAV = "tests/fixtures/hello_campaign.wav"


@dataclass
class DeadLetterService:
    settings: Settings
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture(scope="session")
async def deadletter_service(settings: Settings) -> AsyncIterator[DeadLetterService]:
    from services.deadletters import main as deadletters_main

    stop = asyncio.Event()
    task = asyncio.create_task(
        deadletters_main.run(settings, stop, collect_interval=0.5), name="deadletters"
    )
    yield DeadLetterService(settings=settings, stop=stop, task=task)
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc: NATS = await nats.connect(settings.nats_servers)
    try:
        yield nc.jetstream()
    finally:
        # close, not drain: a test's bound pull subscription would hold a drain for 30 s.
        await nc.close()


async def bootstrap_key_id(pool: asyncpg.Pool) -> str:
    return str(
        await pool.fetchval("SELECT id FROM media_pipeline.api_keys WHERE is_bootstrap LIMIT 1")
    )


def new_job(
    api_key_id: str, *, tenant: str = "ops", trace_id: str | None = None
) -> submission.NewJob:
    """A job whose audio object is NOT in storage unless the test puts it there."""
    job_id = uuid.uuid4()
    return submission.NewJob(
        id=job_id,
        api_key_id=api_key_id,
        tenant_prefix=tenant,
        phone=None,
        campaign_name="ops_campaign",
        campaign_id=None,
        company=None,
        recording_id=None,
        url=None,
        url_sha1=None,
        idempotency_key=None,
        started=None,
        stopped=None,
        bucket="test-bucket",
        object_key=f"{tenant}/ops_campaign/audio/unknown/{job_id}.wav",
        content_type="audio/wav",
        size=1,
        sha256=hashlib.sha256(job_id.bytes).hexdigest(),
        source_table=None,
        source_row_id=None,
        callback_url=None,
        model=None,
        language=None,
        timestamps="segment",
        trace_id=trace_id or uuid.uuid4().hex,
    )


# Only the columns without defaults: independent of how ingest inserts its own jobs.
INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (
    id, api_key_id, tenant_prefix, campaign_name, bucket, b2_object_key, content_type,
    size_bytes, sha256, timestamps, trace_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""


async def insert_job(pool: asyncpg.Pool, job: submission.NewJob, *, publish: bool) -> None:
    """The job row, and (publish=True) its AudioStored through the outbox in one transaction, as
    ingest does; publish=False leaves publishing to the test."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_JOB,
            job.id,
            uuid.UUID(job.api_key_id),
            job.tenant_prefix,
            job.campaign_name,
            job.bucket,
            job.object_key,
            job.content_type,
            job.size,
            job.sha256,
            job.timestamps,
            job.trace_id,
        )
        if publish:
            await outbox.enqueue(
                conn, record.audio_stored_event(job), subjects.audio_stored(job.tenant_prefix)
            )


async def submit(base_url: str, samples_url: str, tenant: str, *, key: str | None = None) -> str:
    """A real job through the API (unique URL, so never the idempotent twin of another)."""
    import aiohttp

    from tests.stack_fixtures import API_KEY

    data = {"url": f"{samples_url}/{uuid.uuid4().hex}/hello_campaign.wav", "b2_prefix": tenant}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            base_url + "/api/media/transcribe", data=data, headers={"X-API-Key": key or API_KEY}
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return str(body["audio_file_id"])


async def wait_completed(pool: asyncpg.Pool, audio_file_id: str, timeout: float = 120) -> None:
    from tests.stack_fixtures import eventually

    async def done() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT status = 'completed' FROM media_pipeline.audio_files WHERE id = $1",
                uuid.UUID(audio_file_id),
            )
        )

    await eventually(done, timeout=timeout)
