"""DELETE /api/media/{id}: every object gone from the (real) bucket, no personal data left in any
table, a tombstone, idempotency, tenants, S3 down, and a job deleted while it runs."""

from __future__ import annotations

import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from libs import layout
from libs.blobstore import S3BlobStore
from libs.categories import store as category_store
from libs.contracts import (
    ActionItem,
    CategoryMatch,
    Evidence,
    Insights,
    TranscriptionDeleted,
    TranscriptKeys,
    TranscriptReady,
    subjects,
)
from libs.db.migrate import load_migrations
from libs.insights import store as insights_store
from libs.jobs import deletion, lifecycle
from libs.layout import transcript_keys
from libs.settings import S3Settings
from libs.transcript import EngineMetadata, Transcript
from libs.transcript.render import FORMATS
from libs.webhooks import payload
from libs.webhooks import queue as webhook_queue
from services.ingest import bodies
from services.ingest.sweeper import Sweeper
from services.notifier.worker import Scheduler
from tests.integration.ingest.conftest import Api, Upstream, make_key, serve_api

pytestmark = pytest.mark.integration


def _unique_phone() -> str:
    """A phone of this test alone: the scans below look at the whole (shared) database."""
    return f"+1415{secrets.randbelow(8_000_000) + 2_000_000}"


@pytest.fixture
def phone() -> str:
    return _unique_phone()


@pytest.fixture
def secret_words() -> str:
    return f"the quarterly numbers are confidential {uuid.uuid4().hex}"


@pytest.fixture
async def store(api: Api) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(api.settings.require_s3()) as s3:
        yield s3


async def _submit(
    api: Api, upstream: Upstream, key: str, phone: str, **fields: str
) -> tuple[str, str]:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit(
        {"url": url, "phone": phone, "campaign": "Spring", **fields}, key=key
    )
    assert status == 200, body
    return str(body["audio_file_id"]), url


def _transcript(words: str) -> Transcript:
    return Transcript(
        text=words,
        language="en",
        duration=2.0,
        model="whisper-1",
        engine="openai",
        engine_metadata=EngineMetadata(raw_response={"text": words}),
    )


def _keys(job: lifecycle.ProcessingJob) -> TranscriptKeys:
    return transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)


async def _upload(store: S3BlobStore, keys: TranscriptKeys, transcript: Transcript) -> None:
    for fmt, (render, content_type, _ext) in FORMATS.items():
        key = getattr(keys, fmt)
        await store.put_bytes(key, render(transcript), content_type)


async def _complete(
    api: Api, store: S3BlobStore, file_id: str, words: str
) -> lifecycle.ProcessingJob:
    """What the transcriber does, through its own lifecycle functions."""
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    await _upload(store, _keys(job), _transcript(words))
    ready = await lifecycle.complete(
        api.pool, job, _transcript(words), _keys(job), force=False, trace_id=None
    )
    assert ready is not None
    return job


async def _leftovers(api: Api, needles: list[str]) -> list[str]:
    """Every (table, column) of media_pipeline whose rows still contain one of `needles`."""
    columns = await api.pool.fetch(
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
            hits = await api.pool.fetchval(
                f"SELECT count(*) FROM media_pipeline.{table} WHERE {as_text} LIKE $1",
                f"%{needle}%",
            )
            if hits:
                found.append(f"{table}.{name} ~ {needle[:0]}")
    return found


async def _deleted_events(api: Api, file_id: str) -> list[TranscriptionDeleted]:
    rows = await api.pool.fetch(
        "SELECT subject, payload FROM media_pipeline.outbox WHERE subject LIKE $1",
        f"{subjects.TRANSCRIPT_DELETED}.%",
    )
    events = [msgspec.json.decode(r["payload"], type=TranscriptionDeleted) for r in rows]
    return [e for e in events if e.audio_file_id == file_id]


async def _insights_and_notifications(
    api: Api, store: S3BlobStore, job: lifecycle.ProcessingJob, key_id: uuid.UUID, words: str
) -> None:
    """What the session's new features keep of a job, each quoting `words`: the insights row
    and its JSON beside the transcripts, speaker names, a notification item and a message."""
    said = Insights(model="m", summary=words, action_items=(ActionItem(owner="agent", text=words),))
    await store.put_bytes(
        layout.insights_key(str(job.id), campaign=job.campaign_name, prefix=job.transcript_prefix),
        msgspec.json.encode({"insights": said}),
        "application/json",
    )
    rule_id = uuid.uuid4()
    async with api.pool.acquire() as conn, conn.transaction():
        await insights_store.save(
            conn,
            insights_store.NewInsights(
                audio_file_id=job.id, tenant=job.tenant_prefix, status="completed", insights=said
            ),
        )
        await conn.execute(
            "INSERT INTO media_pipeline.speaker_names (audio_file_id, names) VALUES ($1, $2)",
            job.id,
            {"Channel 1": words},
        )
        await conn.execute(
            "INSERT INTO media_pipeline.notification_rules"
            " (id, api_key_id, tenant_prefix, events, target, emails)"
            " VALUES ($1, $2, $3, ARRAY['completed'], 'email', ARRAY['ops@example.com'])",
            rule_id,
            key_id,
            job.tenant_prefix,
        )
        await conn.execute(
            "INSERT INTO media_pipeline.notification_items (rule_id, source, audio_file_id, item)"
            " VALUES ($1, 'ev-1', $2, $3)",
            rule_id,
            job.id,
            {"evidence": words},
        )
        await webhook_queue.schedule_notice(
            conn,
            webhook_queue.NewNotice(
                event_id=uuid.uuid4(),
                event_type="notification.completed",
                audio_file_id=job.id,
                api_key_id=key_id,
                rule_id=rule_id,
                channel="email",
                payload=msgspec.json.encode({"text": words}),
            ),
        )


async def test_delete_removes_every_object_and_all_personal_data(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str, secret_words: str
) -> None:
    raw, key = await make_key(api.pool)
    # The prompt may name people too: it goes with the rest.
    prompt = f"Agent Zorbl{secrets.token_hex(4)}"
    file_id, url = await _submit(api, upstream, raw, phone, prompt=prompt)
    job = await _complete(api, store, file_id, secret_words)
    # A webhook already delivered for the job carries its transcript and phone.
    await api.pool.execute(
        webhook_queue.SCHEDULE,
        uuid.uuid4(),
        payload.COMPLETED,
        job.id,
        uuid.UUID(key.id),
        f"{upstream.url}/hook",
        msgspec.json.encode({"phone": phone, "transcript": secret_words}),
    )
    # A category's evidence quotes the transcript (issue #21).
    evidence = Evidence(start=0.0, end=2.0, text=secret_words)
    async with api.pool.acquire() as conn:
        await category_store.save_matches(
            conn, job.id, [CategoryMatch(name="c", matches=(evidence,))]
        )
    await _insights_and_notifications(api, store, job, uuid.UUID(key.id), secret_words)
    # audio + 4 transcripts + the insights JSON (issue #21)
    assert len(await api.objects(key.tenant_prefix + "/")) == 6
    digits = phone.lstrip("+")
    assert len(await _leftovers(api, [prompt])) >= 2  # the job row and its AudioStored event
    found = await _leftovers(api, [digits, secret_words])  # the scan finds them before
    assert "search_utterances.text ~ " in found  # the search index (issue #20) among them
    assert "category_matches.matches ~ " in found  # and the category matches (issue #21)
    # The model's insights (issue #21), the console's speaker names (issue #23), a notification
    # waiting for its rule's quiet period and one already queued (issue #22).
    for place in (
        "insights.insights",
        "speaker_names.names",
        "notification_items.item",
        "webhook_deliveries.payload",
    ):
        assert f"{place} ~ " in found, place

    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200, body
    deleted = msgspec.convert(body, bodies.Deleted)
    assert deleted.objects_removed and deleted.deleted_by == f"key:{key.id}"

    assert await api.objects(key.tenant_prefix + "/") == []
    assert await _leftovers(api, [digits, secret_words, prompt, url.split("//", 1)[1]]) == []
    # The tombstone: id, timestamps and who deleted it.
    status, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=raw)
    assert status == 200
    assert shown["status"] == "deleted" and shown["transcript"] is None
    meta = shown["metadata"]
    assert meta["audio_file_id"] == file_id and meta["phone"] is None
    assert meta["deleted_by"] == f"key:{key.id}" and meta["deleted_at"] == deleted.deleted_at
    assert meta["created_at"]
    # Exactly one transcription.deleted event, naming nothing personal.
    [event] = await _deleted_events(api, file_id)
    assert event.tenant == key.tenant_prefix and event.reason == "api"
    # The job's earlier deliveries are scrubbed (log kept, body gone).
    deliveries = await api.pool.fetch(
        "SELECT payload, status FROM media_pipeline.webhook_deliveries WHERE audio_file_id = $1",
        job.id,
    )
    # The webhook and the notification message.
    assert [d["status"] for d in deliveries] == ["cancelled", "cancelled"]

    # Idempotent: the same answer, nothing new written.
    status, again, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200 and again == body
    assert len(await _deleted_events(api, file_id)) == 1
    # What a deleted job still answers.
    for method, path, code in [
        ("GET", f"/api/media/transcript/{file_id}.txt", "job_deleted"),
        ("POST", f"/api/media/rerun/{file_id}?force=true", "job_deleted"),
    ]:
        status, err, _ = await api.request(method, path, key=raw)
        assert (status, err["error"]) == (409, code), path
    listed, _, _ = await api.request("GET", "/api/media/jobs?status=deleted", key=raw)
    assert listed == 200
    # The same URL makes a new job afterwards (its de-duplication hash went with the job).
    status, new, _ = await api.submit({"url": url}, key=raw)
    assert status == 200 and new["audio_file_id"] != file_id


async def test_delete_is_tenant_scoped(api: Api, upstream: Upstream, phone: str) -> None:
    mine_raw, _ = await make_key(api.pool)
    theirs_raw, theirs = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, theirs_raw, phone)
    for path in (f"/api/media/{file_id}", f"/api/media/{uuid.uuid4()}", "/api/media/nope"):
        status, body, _ = await api.request("DELETE", path, key=mine_raw)
        assert status == 404, (path, body)
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=None)
    assert status == 401
    # Untouched: still theirs, still stored.
    status, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=theirs_raw)
    assert status == 200 and shown["status"] == "pending"
    assert len(await api.objects(theirs.tenant_prefix + "/")) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_delete_while_s3_is_down_is_durable_and_finishes_later(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str
) -> None:
    raw, key = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone)
    s3 = api.settings.require_s3()
    down = replace(
        api.settings,
        s3=S3Settings(
            endpoint=f"http://127.0.0.1:{_closed_port()}",
            bucket=s3.bucket,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        ),
    )
    async with serve_api(down, sweeper=False) as cut_off:
        status, body, _ = await cut_off.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 202, body
    assert body["objects_removed"] is False
    # Postgres is done already, but for the keys of the objects that wait to be removed.
    assert await _leftovers(api, [phone.lstrip("+")]) == ["job_deletions.object_keys ~ "]
    assert len(await api.objects(key.tenant_prefix + "/")) == 1
    row = await api.pool.fetchrow(
        "SELECT finished_at, last_error, attempts FROM media_pipeline.job_deletions "
        "WHERE audio_file_id = $1",
        uuid.UUID(file_id),
    )
    assert row["finished_at"] is None and row["last_error"] and row["attempts"] == 1
    # Not due yet (backoff): the sweeper leaves it; once due, it finishes it.
    sweeper = Sweeper(api.pool, store)
    assert (await sweeper.run_until_idle()).finished == 0
    await api.pool.execute(
        "UPDATE media_pipeline.job_deletions SET next_attempt_at = now() WHERE audio_file_id = $1",
        uuid.UUID(file_id),
    )
    assert (await sweeper.run_until_idle()).finished >= 1
    assert await api.objects(key.tenant_prefix + "/") == []
    assert await _leftovers(api, [phone.lstrip("+")]) == []
    assert (await deletion.load(api.pool, uuid.UUID(file_id))).objects_removed  # type: ignore[union-attr]
    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200 and body["objects_removed"] is True


async def test_a_job_deleted_while_it_runs_is_cancelled(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str, secret_words: str
) -> None:
    raw, key = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone)
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)  # the transcriber runs

    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200, body

    # The transcriber finishes its engine call after the deletion: nothing it does sticks.
    await lifecycle.save_chunk(
        api.pool,
        job.id,
        lifecycle.StoredChunk(
            index=0,
            start_sample=0,
            end_sample=16000,
            request_key="k",
            transcript=_transcript(secret_words),
        ),
    )
    await _upload(store, _keys(job), _transcript(secret_words))
    ready = await lifecycle.complete(
        api.pool, job, _transcript(secret_words), _keys(job), force=False, trace_id=None
    )
    assert ready is None
    assert await lifecycle.fail(api.pool, job, code="x", detail="y", trace_id=None) is None
    assert not await lifecycle.mark_processing(api.pool, job, force=True)  # a redelivery
    assert await lifecycle.is_deleted(api.pool, job.id)
    ready_events = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.outbox WHERE subject LIKE $1 OR subject LIKE $2",
        f"{subjects.TRANSCRIPT_READY}.{subjects.tenant_token(key.tenant_prefix)}",
        f"{subjects.TRANSCRIPT_FAILED}.{subjects.tenant_token(key.tenant_prefix)}",
    )
    assert ready_events == 0
    # Its late uploads re-armed the deletion: the sweeper removes them.
    assert len(await api.objects(key.tenant_prefix + "/")) == 4
    assert (await Sweeper(api.pool, store).run_until_idle()).finished >= 1
    assert await api.objects(key.tenant_prefix + "/") == []
    assert await _leftovers(api, [phone.lstrip("+"), secret_words]) == []


async def test_notifier_announces_the_deletion_and_no_later_result(
    api: Api, upstream: Upstream, phone: str
) -> None:
    raw, key = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone, callback_url=f"{upstream.url}/hook")
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    [event] = await _deleted_events(api, file_id)
    scheduler = Scheduler(api.pool, public_base_url="http://gateway.test")
    assert await scheduler.schedule(event) == 1
    [row] = await api.pool.fetch(
        "SELECT event_type, payload, event_id FROM media_pipeline.webhook_deliveries "
        "WHERE audio_file_id = $1",
        job.id,
    )
    assert row["event_type"] == "transcription.deleted"
    assert str(row["event_id"]) == event.event_id  # webhook-id = event id
    sent: dict[str, Any] = msgspec.json.decode(row["payload"])
    assert sent["type"] == "transcription.deleted"
    assert sent["data"]["audio_file_id"] == file_id and sent["data"]["status"] == "deleted"
    assert phone.lstrip("+") not in row["payload"].decode()
    # A result published before the deletion but handled after it is not announced.
    late = TranscriptReady(
        event_id=str(uuid.uuid4()),
        occurred_at=event.occurred_at,
        audio_file_id=file_id,
        tenant=key.tenant_prefix,
        model="whisper-1",
        engine="openai",
        language="en",
        duration=1.0,
        keys=_keys(job),
        word_count=3,
    )
    assert await scheduler.schedule(late) == 0


@pytest.mark.parametrize("completed", [True, False])
async def test_delete_removes_what_redaction_stored_beside_the_job(
    api: Api,
    upstream: Upstream,
    store: S3BlobStore,
    phone: str,
    secret_words: str,
    completed: bool,
) -> None:
    # A redacting job may also have stored a beeped copy of its audio and, with keep=both,
    # its unredacted transcript: both go with the job. Also while it runs (no transcription
    # row yet): the keys come from the job's row and the layout.
    raw, key = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone)
    if completed:
        job = await _complete(api, store, file_id, secret_words)
    else:
        running = await lifecycle.load_job(api.pool, file_id)
        assert running is not None and await lifecycle.mark_processing(
            api.pool, running, force=False
        )
        job = running
        await _upload(store, _keys(job), _transcript(secret_words))
    extra = [
        layout.redacted_audio_key(job.object_key),
        layout.unredacted_transcript_key(
            job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
        ),
    ]
    for object_key in extra:
        await store.put_bytes(object_key, secret_words.encode(), "application/octet-stream")
    assert set(extra) <= set(await api.objects(key.tenant_prefix + "/"))

    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200, body
    assert await api.objects(key.tenant_prefix + "/") == []


def _old_record(job: lifecycle.ProcessingJob) -> dict[str, Any]:
    """A redaction record as the transcriber wrote it before issue 24: naming two keys."""
    return {
        "policy": "credit_card,cvv,expiry;substitution=entity;keep=both;audio=beep",
        "counts": {"credit_card": 1},
        "spans": [{"cls": "credit_card", "start": 1.0, "end": 2.5}],
        "timing": "words",
        "dropped_metadata": [],
        "original_key": layout.unredacted_transcript_key(
            job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
        ),
        "audio": {
            "status": "redacted",
            "key": layout.redacted_audio_key(job.object_key),
            "mode": "beep",
        },
    }


async def test_delete_forgets_the_redaction_record_and_failures_that_name_the_phone(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str, secret_words: str
) -> None:
    raw, _ = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone)
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    await _upload(store, _keys(job), _transcript(secret_words))
    ready = await lifecycle.complete(
        api.pool,
        job,
        _transcript(secret_words),
        _keys(job),
        force=False,
        trace_id=None,
        redaction=_old_record(job),
    )
    assert ready is not None
    # A later attempt (a rerun) failed, its detail naming the audio key.
    await lifecycle.record_transient(
        api.pool,
        job,
        code="audio_missing",
        detail=f"{job.object_key} not found",
        cooldown_seconds=0,
    )
    digits = phone.lstrip("+")
    assert set(await _leftovers(api, [digits])) >= {
        "transcriptions.redaction ~ ",
        "transcription_failures.error ~ ",
    }

    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200, body
    assert await _leftovers(api, [digits, secret_words]) == []


async def test_records_written_before_lose_their_keys(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str
) -> None:
    """Migration 0024 on a record written before it: the evidence stays, the keys go."""
    raw, _ = await make_key(api.pool)
    file_id, _ = await _submit(api, upstream, raw, phone)
    job = await _complete(api, store, file_id, "nothing to see")
    await api.pool.execute(
        "UPDATE media_pipeline.transcriptions SET redaction = $2 WHERE audio_file_id = $1",
        job.id,
        _old_record(job),
    )
    [migration] = [m for m in load_migrations() if m.version == 24]
    await api.pool.execute(migration.sql)
    record = await api.pool.fetchval(
        "SELECT redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1", job.id
    )
    assert phone.lstrip("+") not in msgspec.json.encode(record).decode()
    assert record["original_stored"] is True and "original_key" not in record
    assert record["audio"] == {"status": "redacted", "mode": "beep"}
    assert record["counts"] == {"credit_card": 1} and record["timing"] == "words"
    # /status still tells where the beeped copy is, from the job's own key.
    status, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=raw)
    assert status == 200
    assert shown["metadata"]["redaction"]["audio_key"] == layout.redacted_audio_key(job.object_key)


async def _opus_job(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str
) -> tuple[str, str, lifecycle.ProcessingJob]:
    raw, _ = await make_key(api.pool)
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.opus"
    status, body, _ = await api.submit({"url": url, "phone": phone}, key=raw)
    assert status == 200, body
    job = await lifecycle.load_job(api.pool, str(body["audio_file_id"]))
    assert job is not None and job.object_key.endswith(".opus")
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    return raw, str(body["audio_file_id"]), job


async def _replace_audio(
    api: Api, store: S3BlobStore, job: lifecycle.ProcessingJob
) -> tuple[lifecycle.StoredAudio, bool]:
    """What the transcriber does for keep=redacted: the WAV under its .wav key, then the row."""
    wav_key = layout.replaced_audio_key(job.object_key)
    stored = await store.put_bytes(wav_key, b"RIFF....WAVE redacted", "audio/wav")
    new = lifecycle.StoredAudio(wav_key, "audio/wav", stored.size, stored.sha256)
    return new, await lifecycle.record_audio_replaced(api.pool, store, job.id, job.object_key, new)


async def test_replaced_audio_moves_the_key_and_removes_the_original(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str, secret_words: str
) -> None:
    raw, file_id, job = await _opus_job(api, upstream, store, phone)
    new, moved = await _replace_audio(api, store, job)
    assert moved and new.key == job.object_key.removesuffix(".opus") + ".wav"
    row = await api.pool.fetchrow(
        "SELECT b2_object_key, content_type, size_bytes, sha256 FROM media_pipeline.audio_files "
        "WHERE id = $1",
        job.id,
    )
    assert tuple(row) == (new.key, "audio/wav", new.size, new.sha256)
    assert not await store.exists(job.object_key)  # the original, removed once the row moved
    assert await store.exists(new.key)
    # The transcripts keep the job's stem, so they are where the layout says.
    await _upload(store, _keys(job), _transcript(secret_words))
    assert await lifecycle.complete(
        api.pool, job, _transcript(secret_words), _keys(job), force=False, trace_id=None
    )
    # The finished removal never re-opens for a live job (a worker that completed late).
    await deletion.rearm(api.pool, job.id, [_keys(job).json])
    await Sweeper(api.pool, store).run_until_idle()
    assert await store.exists(_keys(job).json) and await store.exists(new.key)
    _, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=raw)
    assert shown["status"] == "completed" and shown["metadata"]["b2_key"] == new.key
    # Deleting the job finds the object under its new key.
    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert (status, body["objects_removed"]) == (200, True), body
    prefix = job.object_key.split("/", 1)[0] + "/"
    assert await api.objects(prefix) == []


async def test_a_replacement_stored_before_the_row_moved_is_still_deleted(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str
) -> None:
    # The transcriber died between storing the WAV and moving the row: the row still names the
    # original, and deleting the job removes the WAV too.
    raw, file_id, job = await _opus_job(api, upstream, store, phone)
    await store.put_bytes(layout.replaced_audio_key(job.object_key), b"RIFF", "audio/wav")
    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert (status, body["objects_removed"]) == (200, True), body
    assert await api.objects(job.object_key.split("/", 1)[0] + "/") == []


async def test_a_job_deleted_before_its_audio_is_replaced_keeps_nothing(
    api: Api, upstream: Upstream, store: S3BlobStore, phone: str
) -> None:
    raw, file_id, job = await _opus_job(api, upstream, store, phone)
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    new, moved = await _replace_audio(api, store, job)
    assert not moved
    assert not await store.exists(new.key)
    assert await api.objects(job.object_key.split("/", 1)[0] + "/") == []
