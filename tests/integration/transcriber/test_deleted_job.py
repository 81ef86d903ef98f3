"""A deleted job and the transcriber: a message of a job deleted while queued is acked without
work; a job deleted while the engine runs completes nothing, announces nothing, uploads nothing
after the deletion, removes what it was uploading when the deletion landed, and a long job
stops at its next chunk (issue 24)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import aiobotocore.session
import asyncpg
import msgspec
import pytest

from libs.blobstore import S3BlobStore
from libs.jobs import deletion
from libs.layout import redacted_audio_key, transcript_keys, unredacted_transcript_key
from libs.redaction import Policy
from libs.settings import Settings
from services.ingest.sweeper import Sweeper
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.longaudio import SplitPolicy
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_long_audio import long_recording
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
        assert not await store.exists(late_txt)  # not uploaded after the deletion
        deleted = await deletion.load(pool, uuid.UUID(job.id))
        assert deleted is not None and deleted.objects_removed  # nothing handed back to do
    assert await _results(pool, job.id) == 0
    state = await pool.fetchrow(
        "SELECT a.status, t.audio_file_id AS transcription FROM media_pipeline.audio_files a "
        "LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id WHERE a.id = $1",
        uuid.UUID(job.id),
    )
    assert state["status"] == "deleted" and state["transcription"] is None


# -- issue 24: a DELETE while the engine works leaves nothing of the job behind ----------------


def _phone() -> str:
    """A phone of this test alone (the scans look at the whole shared database)."""
    return f"1415{secrets.randbelow(8_000_000) + 2_000_000}"


def _card() -> str:
    """A Luhn-valid Visa number of this test alone."""
    digits = [4] + [secrets.randbelow(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += sum(divmod(d * 2, 10)) if i % 2 == 0 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


async def _objects(settings: Settings, job: harness.Job) -> list[str]:
    """Every object of the bucket that belongs to `job`: its keys all name its id (the audio's
    file name, which the transcripts mirror; the job's transcripts have no tenant prefix)."""
    s3 = settings.require_s3()
    async with aiobotocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ) as client:
        found = []
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
            found += [o["Key"] for o in page.get("Contents", []) if job.id in o["Key"]]
        return found


async def _leftovers(pool: asyncpg.Pool, needles: list[str]) -> list[str]:
    """Every (table, column) of media_pipeline whose rows still contain one of `needles`."""
    columns = await pool.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'media_pipeline' AND data_type IN ('text', 'bytea', 'jsonb', "
        "'ARRAY')"
    )
    found = []
    for col in columns:
        table, name = col["table_name"], col["column_name"]
        as_text = {
            "bytea": f"encode({name}, 'escape')",
            "ARRAY": f"array_to_string({name}, ' ')",
        }.get(col["data_type"], f"{name}::text")
        for needle in needles:
            hits = await pool.fetchval(
                f"SELECT count(*) FROM media_pipeline.{table} WHERE {as_text} LIKE $1",
                f"%{needle}%",
            )
            if hits:
                found.append(f"{table}.{name}")
    return found


async def _rows_of(pool: asyncpg.Pool, job_id: str) -> dict[str, int]:
    """What the job still has in Postgres beyond its tombstone (must be nothing)."""
    counts = {}
    for table in ("transcriptions", "transcription_chunks", "transcription_failures"):
        counts[table] = await pool.fetchval(
            f"SELECT count(*) FROM media_pipeline.{table} WHERE audio_file_id = $1",
            uuid.UUID(job_id),
        )
    counts["results"] = await _results(pool, job_id)
    counts["pending_deletion"] = await pool.fetchval(
        "SELECT count(*) FROM media_pipeline.job_deletions "
        "WHERE audio_file_id = $1 AND (finished_at IS NULL OR object_keys <> '{}')",
        uuid.UUID(job_id),
    )
    return {k: v for k, v in counts.items() if v}


async def _api_delete(pool: asyncpg.Pool, store: deletion.ObjectDeleter, job_id: str) -> bool:
    """What DELETE /api/media/{id} does: tombstone, then remove the objects inline."""
    await _delete(pool, job_id)
    return await deletion.finish(pool, store, uuid.UUID(job_id))


@pytest.mark.parametrize("keep", ["both", "redacted"])
async def test_a_delete_while_the_engine_works_leaves_no_object_and_no_row(
    settings: Settings, pool: asyncpg.Pool, keep: str
) -> None:
    phone, card = _phone(), _card()
    said = f"my card number is {' '.join(card[i : i + 4] for i in range(0, 16, 4))} thanks"
    policy = Policy.parse("pci", keep=keep, audio="beep")
    async with (
        HeldFake(fixed_text=said) as fake,
        harness.transcriber(settings, pool, fake) as (worker, store),
    ):
        job = await harness.make_job(
            pool, store, AUDIO, phone=phone, timestamps="word", redact=policy.spec
        )
        assert await _objects(settings, job) == [job.key]  # the listing sees the job's objects
        running = asyncio.create_task(worker.handle(harness.delivery(job.event)))

        async def engine_called() -> bool:
            return len(fake.requests) == 1

        await eventually(engine_called, timeout=60)
        # DELETE answers "every object removed" while the engine is still working...
        assert await _api_delete(pool, store, job.id)
        fake.permits.release()
        await asyncio.wait_for(running, 60)  # ...the message ends (acked), not failed
        assert await Sweeper(pool, store).run_until_idle() is not None
        # Nothing the job wrote survives: transcripts, the unredacted copy, the redacted
        # audio, the (replaced) original.
        assert await _objects(settings, job) == []
    assert await _rows_of(pool, job.id) == {}
    assert await _leftovers(pool, [phone, card, card[-4:] + " thanks"]) == []


async def test_a_write_that_lands_after_the_delete_is_removed_by_the_transcriber(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The DELETE (and its removal of every object) lands while the unredacted copy is on its
    way to S3: the copy is written after the deletion finished, and still does not survive."""
    phone = _phone()
    policy = Policy.parse("pci", keep="both")
    deleted_during = []

    class DeletedMidUpload:
        """The bucket, with a DELETE landing as the unredacted copy is being uploaded."""

        def __init__(self, inner: S3BlobStore) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def put_bytes(self, key: str, data: bytes, content_type: str) -> Any:
            if "/unredacted/" in key:
                deleted_during.append(await _api_delete(pool, self._inner, job.id))
            return await self._inner.put_bytes(key, data, content_type)

    async with (
        FakeOpenAIServer(fixed_text="nothing secret here") as fake,
        harness.transcriber(settings, pool, fake, wrap_store=DeletedMidUpload) as (
            worker,
            store,
        ),
    ):
        job = await harness.make_job(pool, store, AUDIO, phone=phone, redact=policy.spec)
        await worker.handle(harness.delivery(job.event))  # returns: acked, nothing to retry
        assert deleted_during == [True]
        # Removed by the transcriber itself, before any sweeper pass.
        assert await _objects(settings, job) == []
        assert len(fake.requests) == 1
    assert await _rows_of(pool, job.id) == {}
    assert await _leftovers(pool, [phone]) == []


async def test_a_deleted_long_job_stops_at_its_next_chunk(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    audio, _ = long_recording(4, seed=7)
    limits = msgspec.structs.replace(LIMITS, max_seconds=31.0)
    split = SplitPolicy(
        chunk_seconds=30, search_seconds=5, overlap_seconds=1.0, chunk_concurrency=1
    )
    async with (
        HeldFake() as fake,
        harness.transcriber(settings, pool, fake, split_policy=split, limits=limits) as (
            worker,
            store,
        ),
    ):
        job = await harness.make_job(pool, store, audio, phone=_phone())
        running = asyncio.create_task(worker.handle(harness.delivery(job.event)))
        fake.permits.release()  # chunk 1

        async def chunk_saved() -> bool:
            return bool((await harness.job_state(pool, job.id))["chunks"] == 1)

        await eventually(chunk_saved, timeout=60)
        planned = await pool.fetchval(
            "SELECT (progress->>'chunks')::int FROM media_pipeline.audio_files WHERE id = $1",
            uuid.UUID(job.id),
        )
        assert planned >= 6
        assert await _api_delete(pool, store, job.id)
        for _ in range(100):  # every chunk may go on: the engine does not hold it back
            fake.permits.release()
        await asyncio.wait_for(running, 60)
        # Chunk 1, and at most the one that was already on its way when the DELETE came.
        assert 1 <= len(fake.requests) <= 2, len(fake.requests)
        assert await Sweeper(pool, store).run_until_idle() is not None
        assert await _objects(settings, job) == []
    assert await _rows_of(pool, job.id) == {}


async def test_a_redelivered_message_of_a_deleted_job_removes_what_a_dead_attempt_wrote(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """An attempt died between its uploads and the check after them, with the deletion already
    finished: its message comes back, and the job's keys are swept once more."""
    phone = _phone()
    async with (
        FakeOpenAIServer() as fake,
        harness.transcriber(settings, pool, fake) as (worker, store),
    ):
        job = await harness.make_job(pool, store, AUDIO, phone=phone)
        assert await _api_delete(pool, store, job.id)
        keys = transcript_keys(job.key, campaign="camp")
        late = [
            keys.json,
            keys.txt,
            keys.srt,
            keys.vtt,
            unredacted_transcript_key(job.key, campaign="camp"),
            redacted_audio_key(job.key),
            job.key,  # a replaced original
        ]
        for key in late:
            await store.put_bytes(key, b"written by an attempt that died", "text/plain")
        assert len(await _objects(settings, job)) == len(late)
        await worker.handle(harness.delivery(job.event, attempt=2))
        assert await _objects(settings, job) == []
        assert fake.requests == []
    assert await _rows_of(pool, job.id) == {}
    assert await _leftovers(pool, [phone]) == []
