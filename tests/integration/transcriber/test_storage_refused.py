"""A transcript upload the object store finally refuses is a permanent failure (one paid
transcription, a TranscriptionFailed event, the failed webhook), never a redelivery loop; and
tenant jobs' transcripts go under their transcript prefix."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from libs.blobstore import BlobStoreRefused, S3BlobStore, StoredObject
from libs.bus import Reject
from libs.bus.consumer import Outcome, decide
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.settings import Settings
from services.transcriber.engines import Engines
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.worker import Transcriber
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.transcriber import harness
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

SPEECH = (Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav").read_bytes()


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    """A database of its own, so the session's running stack never touches these jobs."""
    ours = replace(settings, database_url=await create_database(postgres_server, "txrefused"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text="hello this is a test") as server:
        yield server


class RefusingTranscripts:
    """The real S3 store, except that transcript uploads get a final 4xx (as S3 answers a key
    over 1024 bytes, or a bucket policy denying the path)."""

    def __init__(self, inner: S3BlobStore) -> None:
        self._inner = inner
        self.bucket = inner.bucket
        self.refused: list[str] = []

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if "/transcriptions/" in key:
            self.refused.append(key)
            raise BlobStoreRefused(f"put {key}: object store refused: 400 KeyTooLongError")
        return await self._inner.put_bytes(key, data, content_type)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> StoredObject:
        return await self._inner.put_stream(key, chunks, content_type)

    async def download_to(self, key: str, path: Path) -> int:
        return await self._inner.download_to(key, path)

    async def get_bytes(self, key: str) -> bytes:
        return await self._inner.get_bytes(key)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self._inner.exists(key)

    def url_for(self, key: str) -> str:
        return self._inner.url_for(key)


async def test_a_refused_transcript_upload_fails_the_job_once_and_for_all(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    engine = OpenAIEngine(build_client(fake.api_key, fake.base_url, 30.0), limits=LIMITS)
    try:
        async with S3BlobStore.open(settings.require_s3()) as s3:
            store = RefusingTranscripts(s3)
            worker = Transcriber(
                pool, store, Engines(default=engine, offline=harness.offline_engine())
            )
            job = await harness.make_job(pool, s3, SPEECH)
            delivery = harness.delivery(job.event)
            with pytest.raises(Reject) as raised:
                await worker.handle(delivery)
            # Terminated, not redelivered: JetStream is told TERM.
            assert decide(raised.value, delivery)[0] is Outcome.TERM
            assert store.refused
            state = await harness.job_state(pool, job.id)
            assert (state["status"], state["failure"], state["error_code"]) == (
                "failed",
                "permanent",
                "storage_refused",
            )
            assert (state["failed_events"], state["ready_events"]) == (1, 0)
            failed = await pool.fetchval(
                "SELECT convert_from(payload, 'UTF8') FROM media_pipeline.outbox "
                "WHERE subject LIKE 'transcribe.transcript.failed.%' "
                "AND convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
                job.id,
            )
            event = msgspec.json.decode(failed)
            assert event["error_code"] == "storage_refused" and event["permanent"] is True
            # A redelivery (or a replay without force) does not pay for a second transcription.
            await worker.handle(harness.delivery(job.event, attempt=2))
            assert len(fake.requests) == 1
    finally:
        await engine.aclose()


async def test_a_tenant_jobs_transcripts_go_under_its_transcript_prefix(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET transcript_prefix = $2 WHERE id = $1::uuid",
            job.id,
            job.tenant,
        )
        await worker.handle(harness.delivery(job.event))
        stem = job.key.rsplit("/audio/", 1)[1].rsplit(".", 1)[0]
        expected = f"{job.tenant}/camp/transcriptions/json/{stem}.json"
        assert await store.exists(expected)
        assert not await store.exists(f"camp/transcriptions/json/{stem}.json")
        keys = await pool.fetchrow(
            "SELECT b2_transcript_json_key, b2_transcript_txt_key FROM media_pipeline.transcriptions "
            "WHERE audio_file_id = $1::uuid",
            job.id,
        )
        assert keys["b2_transcript_json_key"] == expected
        assert keys["b2_transcript_txt_key"].startswith(f"{job.tenant}/camp/transcriptions/txt/")
