"""A deleted job's events leave the stream too (libs/outbox/published.py): DELETE and retention
erase every message of the job from TRANSCRIBE (its TranscriptionDeleted stays: nothing
personal in it), with NATS down too; a consumer that is behind skips the erased messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from libs import bus, outbox, replay
from libs.blobstore import S3BlobStore
from libs.bus import jetstream
from libs.contracts import JobProgress, new_event_id, streams, subjects, utcnow
from libs.deadletters import records as dead_letters
from libs.deadletters.requeue import requeue
from libs.outbox import OutboxRelay
from services.cli import replay as replay_cli
from services.ingest.sweeper import Sweeper
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.ingest.test_job_delete import _complete, _submit, _unique_phone
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration

STREAM = streams.STREAM_NAME


@pytest.fixture
async def store(api: Api) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(api.settings.require_s3()) as s3:
        yield s3


@pytest.fixture
async def nc(api: Api) -> AsyncIterator[NATS]:
    client = await nats.connect(api.settings.nats_servers)
    try:
        yield client
    finally:
        await client.close()


def _sweeper(api: Api, store: S3BlobStore, js: JetStreamContext) -> Sweeper:
    return Sweeper(api.pool, store, eraser=jetstream.StreamEraser(js))


async def _recorded(api: Api, file_id: str) -> list[Any]:
    return list(
        await api.pool.fetch(
            "SELECT stream, seq, erase_at, attempts, last_error "
            "FROM media_pipeline.published_events WHERE audio_file_id = $1 ORDER BY seq",
            uuid.UUID(file_id),
        )
    )


async def _tenant_messages(js: JetStreamContext, tenant: str) -> list[tuple[str, bytes]]:
    """Every message of the tenant still in the stream (subject, data): a direct scan."""
    found: list[tuple[str, bytes]] = []
    seq = 1
    subject = f"{subjects.ROOT}.*.*.{subjects.tenant_token(tenant)}"
    while True:
        try:
            msg = await js.get_msg(STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append((msg.subject or "", msg.data or b""))
        assert msg.seq is not None
        seq = msg.seq + 1


async def _job_with_events(
    api: Api, upstream: Upstream, store: S3BlobStore, js: JetStreamContext
) -> tuple[str, str, str, str]:
    """A completed job whose AudioStored and TranscriptReady are in the stream: (raw key,
    tenant, job id, phone digits)."""
    raw, key = await make_key(api.pool)
    phone = _unique_phone()
    file_id, _ = await _submit(api, upstream, raw, phone)
    await _complete(api, store, file_id, f"secret words {uuid.uuid4().hex}")
    await OutboxRelay(api.pool, js).run_until_idle()
    digits = phone.lstrip("+")
    recorded = await _recorded(api, file_id)
    assert len(recorded) == 2 and all(r["erase_at"] is None for r in recorded)
    # The stream holds the phone: AudioStored's phone and storage key, the transcripts' keys.
    stored = [await js.get_msg(STREAM, r["seq"]) for r in recorded]
    assert all(digits in (m.data or b"").decode() for m in stored)
    return raw, key.tenant_prefix, file_id, digits


async def _assert_erased(
    api: Api, js: JetStreamContext, tenant: str, file_id: str, digits: str, seqs: list[int]
) -> None:
    for seq in seqs:
        with pytest.raises(NotFoundError):
            await js.get_msg(STREAM, seq)
    assert await _recorded(api, file_id) == []
    left = await _tenant_messages(js, tenant)
    # Only the news of the deletion names the job (once published), and nothing names the phone.
    naming = {s for s, d in left if file_id.encode() in d}
    assert naming <= {subjects.transcript_deleted(tenant)}
    assert not [s for s, d in left if digits.encode() in d]


async def test_delete_erases_the_jobs_events_from_the_stream(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    js = nc.jetstream()
    raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    seqs = [r["seq"] for r in await _recorded(api, file_id)]
    # A consumer that is behind: it has not seen the job's messages yet.
    durable = f"behind-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(
        f"{subjects.ROOT}.*.*.{subjects.tenant_token(tenant)}", durable=durable, stream=STREAM
    )

    status, body, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200, body
    # Due in the deletion's transaction; the deletion's own event is published, not recorded.
    assert all(r["erase_at"] is not None for r in await _recorded(api, file_id))
    await OutboxRelay(api.pool, js).run_until_idle()
    assert len(await _recorded(api, file_id)) == 2

    await _sweeper(api, store, js).run_until_idle()
    await _assert_erased(api, js, tenant, file_id, digits, seqs)
    assert [s for s, _ in await _tenant_messages(js, tenant)] == [
        subjects.transcript_deleted(tenant)
    ]
    # The consumer that was behind skips the erased sequences: the deletion is all it gets.
    [msg] = await sub.fetch(10, timeout=5)
    assert msg.subject == subjects.transcript_deleted(tenant)
    await msg.ack()
    await js.delete_consumer(STREAM, durable)
    # Erasing what is gone already is done, not an error (a retry after a lost answer).
    assert await jetstream.erase_message(js, STREAM, seqs[0]) is False
    assert await jetstream.erase_message(js, "NO_SUCH_STREAM", 1) is False
    last = (await js.stream_info(STREAM)).state.last_seq
    assert await jetstream.erase_message(js, STREAM, last + 1000) is False


async def test_a_message_in_flight_when_erased_is_acked_without_error(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    js = nc.jetstream()
    raw, tenant, file_id, _digits = await _job_with_events(api, upstream, store, js)
    durable = f"inflight-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subjects.audio_stored(tenant), durable=durable, stream=STREAM)
    [delivered] = await sub.fetch(1, timeout=5)  # the transcriber has it, not acked yet
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    await _sweeper(api, store, js).run_until_idle()
    await delivered.ack_sync()  # acking an erased message is fine
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    await js.delete_consumer(STREAM, durable)


async def test_an_event_published_after_the_deletion_is_erased_too(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    js = nc.jetstream()
    raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    seqs = [r["seq"] for r in await _recorded(api, file_id)]
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    await _sweeper(api, store, js).run_until_idle()
    # A late event of the job (written by a process that did not see the tombstone yet).
    late = JobProgress(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=file_id,
        tenant=tenant,
        stage="transcribing",
    )
    async with api.pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, late, subjects.job_progress(tenant))
    await OutboxRelay(api.pool, js).run_until_idle()
    [row] = await _recorded(api, file_id)
    assert row["erase_at"] is not None  # its job is deleted: due at once
    await _sweeper(api, store, js).run_until_idle()
    await _assert_erased(api, js, tenant, file_id, digits, [*seqs, row["seq"]])


async def test_nats_down_leaves_the_erasure_due_until_it_is_back(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS, nats_server: Any
) -> None:
    js = nc.jetstream()
    raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    seqs = [r["seq"] for r in await _recorded(api, file_id)]
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    await nats_server.stop()
    try:
        run = await _sweeper(api, store, js).run_until_idle()
        assert run is not None
        rows = await _recorded(api, file_id)
        assert len(rows) == 2
        assert all(r["attempts"] == 1 and r["last_error"] for r in rows)
        assert REGISTRY.get_sample_value("transcribe_stream_erasures_pending") >= 2
    finally:
        await nats_server.start()
    await eventually(lambda: _connected(nc), timeout=30)
    # Not due yet (backoff): the sweeper leaves it; once due, it erases the messages.
    await _sweeper(api, store, js).run_until_idle()
    assert len(await _recorded(api, file_id)) == 2
    await api.pool.execute(
        "UPDATE media_pipeline.published_events SET erase_at = now() WHERE audio_file_id = $1",
        uuid.UUID(file_id),
    )
    await _sweeper(api, store, js).run_until_idle()
    await _assert_erased(api, js, tenant, file_id, digits, seqs)


async def _connected(nc: NATS) -> bool:
    return bool(nc.is_connected)


async def test_retention_erases_the_jobs_events_from_the_stream(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    js = nc.jetstream()
    _raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    seqs = [r["seq"] for r in await _recorded(api, file_id)]
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET transcript_expires_at = now() - interval '1 s' "
        "WHERE id = $1",
        uuid.UUID(file_id),
    )
    await _sweeper(api, store, js).run_until_idle()
    await OutboxRelay(api.pool, js).run_until_idle()  # the retention's TranscriptionDeleted
    await _assert_erased(api, js, tenant, file_id, digits, seqs)


async def test_rows_of_live_jobs_are_purged_after_the_streams_max_age(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    js = nc.jetstream()
    _raw, _tenant, file_id, _digits = await _job_with_events(api, upstream, store, js)
    await api.pool.execute(
        "UPDATE media_pipeline.published_events SET published_at = now() - interval '31 days' "
        "WHERE audio_file_id = $1",
        uuid.UUID(file_id),
    )
    await _sweeper(api, store, js).run_until_idle()
    assert await _recorded(api, file_id) == []


async def test_copies_from_replays_and_requeues_are_erased_too(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    """Copies published outside the outbox (`transcribe replay job|webhooks`, a dead letter's
    requeue) are recorded as well, so the deletion erases them with the rest."""
    js = nc.jetstream()
    raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    await replay_cli.rerun_job(api.settings, file_id, force=True)
    resent = await replay.resend_webhooks(js, since=utcnow() - timedelta(hours=1), tenant=tenant)
    assert resent.republished == 1
    await replay_cli.record_copies(api.settings, resent.stored)
    # The original (the webhooks' resend is its copy).
    ready = next(
        e
        for e in await replay.job_events(js, file_id, tenant=tenant)
        if e.event_type == "transcript.ready"
    )
    dl_id = await dead_letters.insert(
        api.pool,
        dead_letters.NewDeadLetter(
            kind="max_deliveries", stream=STREAM, consumer=streams.NOTIFIER_DURABLE,
            stream_seq=ready.seq, deliveries=20, reason=None, subject=ready.subject,
            event_type="transcript.ready", event_id=ready.json()["event_id"],
            audio_file_id=uuid.UUID(file_id), tenant_prefix=tenant, payload=ready.data,
            advisory={}, occurred_at=None,
        ),
    )  # fmt: skip
    assert dl_id is not None
    row = await dead_letters.get(api.pool, dl_id, api_key_id=None)
    assert await requeue(api.pool, js, row) == "event_republished"
    seqs = [r["seq"] for r in await _recorded(api, file_id)]
    assert len(seqs) == 5  # AudioStored, TranscriptReady, and the three copies

    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    await _sweeper(api, store, js).run_until_idle()
    await _assert_erased(api, js, tenant, file_id, digits, seqs)


async def test_the_dead_letter_stream_holds_no_copy_of_the_event(
    api: Api, upstream: Upstream, store: S3BlobStore, nc: NATS
) -> None:
    """A dead-lettered message of the job leaves only JetStream's advisory in
    TRANSCRIBE_DEADLETTERS: stream, consumer and sequence, nothing of the job or its caller."""
    js = nc.jetstream()
    raw, tenant, file_id, digits = await _job_with_events(api, upstream, store, js)
    spec = streams.deadletter_stream_spec(
        api.settings.stream_max_age_days, api.settings.stream_replicas
    )
    await bus.ensure_stream(js, spec)
    durable = f"dl-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subjects.audio_stored(tenant), durable=durable, stream=STREAM)
    [msg] = await sub.fetch(1, timeout=5)
    await msg.term()  # what a consumer's Reject does: a dead letter
    advisory_subject = f"{streams.ADVISORY_MSG_TERMINATED}.{STREAM}.{durable}"

    async def advisory() -> Any:
        try:
            return await js.get_msg(spec.name, subject=advisory_subject)
        except NotFoundError:
            return None

    found = await eventually(advisory, timeout=30)
    assert msg.metadata.sequence.stream == json.loads(found.data)["stream_seq"]
    assert file_id.encode() not in found.data and digits.encode() not in found.data
    await js.delete_consumer(STREAM, durable)
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=raw)
    assert status == 200
    await _sweeper(api, store, js).run_until_idle()
    with pytest.raises(NotFoundError):  # the original it points to is erased
        await js.get_msg(STREAM, msg.metadata.sequence.stream)
