"""Retention: per-key TTLs (CLI), per-job TTLs only downwards, and the sweeper deleting expired
jobs and audio through the deletion path (bucket listed, tables scanned), with two sweepers at
once taking each job once."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import msgspec
import pytest

from libs import apikeys
from libs.blobstore import S3BlobStore
from libs.contracts import TranscriptionDeleted, subjects
from libs.deadletters import records
from libs.jobs import lifecycle, requeue
from libs.layout import transcript_keys
from libs.settings import Settings
from libs.transcript import Transcript
from libs.transcript.render import FORMATS
from services.ingest.sweeper import Sweeper
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.ingest.test_keys_cli import _create, _keys

pytestmark = pytest.mark.integration

DAY = 86400


@pytest.fixture
async def store(api: Api) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(api.settings.require_s3()) as s3:
        yield s3


def _phone() -> str:
    return f"+1415{secrets.randbelow(8_000_000) + 2_000_000}"


async def _submit(
    api: Api, upstream: Upstream, key: str, **fields: str
) -> tuple[int, dict[str, object]]:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", "phone": _phone(), **fields}
    status, body, _ = await api.submit(data, key=key)
    return status, body


async def _expiry(api: Api, file_id: str) -> tuple[datetime | None, datetime | None]:
    row = await api.pool.fetchrow(
        "SELECT audio_expires_at - created_at AS audio, transcript_expires_at - created_at AS t "
        "FROM media_pipeline.audio_files WHERE id = $1",
        uuid.UUID(file_id),
    )
    return row["audio"], row["t"]


async def _expire_now(api: Api, file_id: str, column: str) -> None:
    """Time passes: the job's expiry is in the past."""
    await api.pool.execute(
        f"UPDATE media_pipeline.audio_files SET {column} = now() - interval '1 second' "
        "WHERE id = $1",
        uuid.UUID(file_id),
    )


async def test_job_ttls_come_from_the_key_and_may_only_be_shorter(
    api: Api, upstream: Upstream
) -> None:
    raw, _ = await make_key(api.pool, audio_ttl_seconds=7 * DAY, transcript_ttl_seconds=30 * DAY)
    status, body = await _submit(api, upstream, raw)
    assert status == 200, body
    assert await _expiry(api, str(body["audio_file_id"])) == (
        timedelta(days=7),
        timedelta(days=30),
    )
    status, body = await _submit(api, upstream, raw, audio_ttl="36h", transcript_ttl="3d")
    assert status == 200, body
    assert await _expiry(api, str(body["audio_file_id"])) == (
        timedelta(hours=36),
        timedelta(days=3),
    )
    _, shown, _ = await api.request("GET", f"/api/media/status/{body['audio_file_id']}", key=raw)
    assert shown["metadata"]["transcript_expires_at"] and shown["metadata"]["audio_expires_at"]
    for field, value in [
        ("transcript_ttl", "31d"),
        ("audio_ttl", "8d"),
        ("audio_ttl", "soon"),
        ("audio_ttl", "0"),
        ("transcript_ttl", "-1d"),
        ("transcript_ttl", "1e9"),
        ("transcript_ttl", "9" * 40),
    ]:
        status, err = await _submit(api, upstream, raw, **{field: value})
        assert (status, err["error"]) == (400, f"invalid_{field}"), (field, value, err)
    for hostile in ("7d\x00", "7\x01d", "７d"):
        status, err = await _submit(api, upstream, raw, audio_ttl=hostile)
        assert status == 400, (hostile, err)
    # A key without TTLs keeps forever unless the job asks.
    forever, _ = await make_key(api.pool)
    status, body = await _submit(api, upstream, forever)
    assert await _expiry(api, str(body["audio_file_id"])) == (None, None)
    status, body = await _submit(api, upstream, forever, transcript_ttl="90m")
    assert await _expiry(api, str(body["audio_file_id"])) == (None, timedelta(minutes=90))


async def test_expired_jobs_and_audio_are_removed_by_the_sweeper(
    api: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(api.pool, audio_ttl_seconds=DAY, transcript_ttl_seconds=7 * DAY)
    prefix = key.tenant_prefix + "/"
    _, gone = await _submit(api, upstream, raw)
    _, audio_only = await _submit(api, upstream, raw)
    _, queued = await _submit(api, upstream, raw)
    _, kept = await _submit(api, upstream, raw)
    gone_id, audio_id, queued_id = (str(b["audio_file_id"]) for b in (gone, audio_only, queued))
    # `audio_only` is completed, with its four transcripts stored.
    job = await lifecycle.load_job(api.pool, audio_id)
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    transcript = Transcript(text="kept words", language="en", duration=1.0, model="m", engine="e")
    for fmt, (render, content_type, _ext) in FORMATS.items():
        await store.put_bytes(getattr(keys, fmt), render(transcript), content_type)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)
    assert len(await api.objects(prefix)) == 4 + 4

    await _expire_now(api, gone_id, "transcript_expires_at")
    await _expire_now(api, audio_id, "audio_expires_at")
    await _expire_now(api, queued_id, "audio_expires_at")  # still queued: keeps its audio
    sweeper = Sweeper(api.pool, store)
    await sweeper.run_until_idle()

    left = await api.objects(prefix)
    assert sorted(left) == sorted(
        [
            *(k for k in (keys.json, keys.txt, keys.srt, keys.vtt) if k),
            str(queued["b2_key"]),
            str(kept["b2_key"]),
        ]
    )
    _, shown, _ = await api.request("GET", f"/api/media/status/{gone_id}", key=raw)
    assert shown["status"] == "deleted" and shown["metadata"]["deleted_by"] == "retention"
    phone = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.audio_files WHERE id = $1 AND phone IS NULL",
        uuid.UUID(gone_id),
    )
    assert phone == 1

    async def audio_events(file_id: object) -> int:
        return int(
            await api.pool.fetchval(
                "SELECT count(*) FROM media_pipeline.outbox WHERE subject LIKE $1 "
                "AND convert_from(payload, 'UTF8') LIKE $2",
                "transcribe.audio.stored.%",
                f"%{file_id}%",
            )
        )

    # The expired job's events left the outbox (one pass for the batch); the others' did not.
    assert await audio_events(gone_id) == 0
    assert await audio_events(kept["audio_file_id"]) == 1
    _, shown, _ = await api.request("GET", f"/api/media/status/{audio_id}", key=raw)
    assert shown["status"] == "completed" and shown["metadata"]["audio_removed_at"]
    assert shown["transcript"] == "kept words"
    assert await _indexed(api, audio_id) == 2  # search (issue #20): its call row and utterance stay
    events = [
        msgspec.json.decode(r["payload"], type=TranscriptionDeleted)
        for r in await api.pool.fetch(
            "SELECT payload FROM media_pipeline.outbox WHERE subject = $1",
            subjects.transcript_deleted(key.tenant_prefix),
        )
    ]
    assert [(e.audio_file_id, e.reason) for e in events] == [(gone_id, "retention")]
    # Nothing is due any more: a second run removes nothing.
    assert await api.objects(prefix) == left
    await sweeper.run_until_idle()
    assert await api.objects(prefix) == left
    # The whole job's TTL later takes the rest of the audio-only job too.
    await _expire_now(api, audio_id, "transcript_expires_at")
    await sweeper.run_until_idle()
    assert sorted(await api.objects(prefix)) == sorted([str(queued["b2_key"]), str(kept["b2_key"])])
    assert await _indexed(api, audio_id) == 0  # and leaves the search index with the job


async def _indexed(api: Api, file_id: str) -> int:
    """The job's rows in the search index (issue #20)."""
    return int(
        await api.pool.fetchval(
            "SELECT (SELECT count(*) FROM media_pipeline.search_calls WHERE audio_file_id = $1)"
            " + (SELECT count(*) FROM media_pipeline.search_utterances WHERE audio_file_id = $1)",
            uuid.UUID(file_id),
        )
    )


async def test_rerun_after_audio_retention_is_409_and_keeps_the_transcript(
    api: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(api.pool, audio_ttl_seconds=DAY)
    _, body = await _submit(api, upstream, raw)
    file_id = str(body["audio_file_id"])
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    transcript = Transcript(text="kept words", language="en", duration=1.0, model="m", engine="e")
    for fmt, (render, content_type, _ext) in FORMATS.items():
        await store.put_bytes(getattr(keys, fmt), render(transcript), content_type)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)
    await _expire_now(api, file_id, "audio_expires_at")
    await Sweeper(api.pool, store).run_until_idle()
    assert job.object_key not in await api.objects(key.tenant_prefix + "/")
    events_before = await api.pool.fetchval("SELECT count(*) FROM media_pipeline.outbox")

    for query in ("", "?force=true"):
        status, answer, _ = await api.request("POST", f"/api/media/rerun/{file_id}{query}", key=raw)
        assert (status, answer["error"]) == (409, "audio_expired"), answer
    # Nothing was written: still completed, the transcript still served, no event queued.
    assert await api.pool.fetchval("SELECT count(*) FROM media_pipeline.outbox") == events_before
    _, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=raw)
    assert shown["status"] == "completed" and shown["transcript"] == "kept words"
    status, text, _ = await api.request("GET", f"/api/media/transcript/{file_id}.txt", key=raw)
    assert status == 200 and b"kept words" in text
    # So does the requeue of a dead letter of its transcription (nothing marked requeued).
    dead_letter = await records.insert(
        api.pool,
        records.NewDeadLetter(
            kind="max_deliveries",
            stream="TRANSCRIBE",
            consumer="transcriber",
            stream_seq=secrets.randbelow(10**9),
            deliveries=10,
            reason=None,
            subject=None,
            event_type="audio.stored",
            event_id=None,
            audio_file_id=job.id,
            tenant_prefix=key.tenant_prefix,
            payload=None,
            advisory={},
            occurred_at=None,
        ),
    )
    status, answer, _ = await api.request(
        "POST", f"/api/ops/dead-letters/{dead_letter}/requeue", key=raw
    )
    assert (status, answer["error"]) == (409, "audio_expired"), answer
    assert (await records.get(api.pool, dead_letter, api_key_id=None))["requeued_at"] is None
    # An operator's requeue of failed jobs passes over it too.
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'failed' WHERE id = $1", job.id
    )
    requeued = await requeue.requeue_failed(
        api.pool, tenant=key.tenant_prefix, include_permanent=True
    )
    assert [(r.audio_file_id, r.requeued) for r in requeued] == [(file_id, False)]
    assert (
        await api.pool.fetchval(
            "SELECT status FROM media_pipeline.audio_files WHERE id = $1", job.id
        )
        == "failed"
    )


async def test_two_sweepers_take_each_expired_job_once(
    api: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(api.pool, transcript_ttl_seconds=DAY)
    ids = []
    for _ in range(6):
        _, body = await _submit(api, upstream, raw)
        ids.append(str(body["audio_file_id"]))
        await _expire_now(api, ids[-1], "transcript_expires_at")
    await asyncio.gather(
        Sweeper(api.pool, store, batch=2).run_until_idle(),
        Sweeper(api.pool, store, batch=2).run_until_idle(),
    )
    assert await api.objects(key.tenant_prefix + "/") == []
    deleted = await api.pool.fetch(
        "SELECT payload FROM media_pipeline.outbox WHERE subject = $1",
        subjects.transcript_deleted(key.tenant_prefix),
    )
    announced = sorted(
        msgspec.json.decode(r["payload"], type=TranscriptionDeleted).audio_file_id for r in deleted
    )
    assert announced == sorted(ids)


async def test_keys_cli_sets_ttls(api: Api, ingest_settings: Settings) -> None:
    env = {"DATABASE_URL": ingest_settings.require_database_url()}
    created = _create(env, "--audio-ttl", "7d", "--transcript-ttl", "30d")
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert (out["audio_ttl_seconds"], out["transcript_ttl_seconds"]) == (7 * DAY, 30 * DAY)
    changed = _keys(env, "retention", out["id"], "--transcript-ttl", "1d")
    assert changed.returncode == 0, changed.stderr
    key = await apikeys.get(api.pool, out["id"])
    assert key is not None
    assert (key.audio_ttl_seconds, key.transcript_ttl_seconds) == (None, DAY)
    bad = _create(env, "--audio-ttl", "a week")
    assert bad.returncode == 2 and "audio_ttl" in bad.stderr
    assert _keys(env, "retention", "no-such-key", "--audio-ttl", "1d").returncode == 1
