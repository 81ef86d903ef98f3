"""Dead letters end to end: real advisories from nats-server, recorded in Postgres by the
deadletters service, visible and requeueable through the API."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import nats
import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs import apikeys
from libs.blobstore import S3BlobStore
from libs.contracts import encode, streams
from libs.contracts import subjects as subj
from libs.deadletters import records as dl_repo
from libs.jobs import record
from services.cli import replay as cli
from services.cli.deadletters import requeue_many
from services.ingest import bodies
from tests.integration.ops.conftest import (
    FIXTURES_WAV,
    DeadLetterService,
    bootstrap_key_id,
    insert_job,
    new_job,
    submit,
)
from tests.shapes import conforms
from tests.stack_fixtures import API_KEY, RunningStack, WebhookInbox, eventually

pytestmark = pytest.mark.integration

DL_FOR_JOB = "SELECT * FROM media_pipeline.dead_letters WHERE audio_file_id = $1 ORDER BY id"


async def _api(
    stack: RunningStack, method: str, path: str, key: str = API_KEY
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, stack.base_url + path, headers={"X-API-Key": key}) as r,
    ):
        return r.status, dict(await r.json())


async def test_terminated_job_is_recorded_visible_to_its_owner_and_requeueable(
    running_stack: RunningStack,
    deadletter_service: DeadLetterService,
    webhook_inbox: WebhookInbox,
    pool: asyncpg.Pool,
) -> None:
    # The audio object is missing: the transcriber fails the job and term()s the message.
    job = new_job(await bootstrap_key_id(pool))
    await insert_job(pool, job, publish=True)

    async def recorded() -> list[asyncpg.Record]:
        return list(await pool.fetch(DL_FOR_JOB, job.id))

    rows = await eventually(recorded, timeout=60)
    dl = rows[0]
    assert dl["kind"] == "terminated"
    assert dl["consumer"] == streams.TRANSCRIBER_DURABLE
    assert dl["event_type"] == "audio.stored"
    assert dl["subject"] == subj.audio_stored("ops")
    assert dl["requeued_at"] is None

    # The owner (here the bootstrap key) sees it; another key does not.
    status, body = await _api(running_stack, "GET", f"/api/ops/dead-letters?audio_file_id={job.id}")
    assert status == 200
    conforms(body, bodies.DeadLetters)
    listed = body["dead_letters"]
    assert isinstance(listed, list) and [d["id"] for d in listed] == [dl["id"]]
    assert listed[0]["event"]["audio_file_id"] == str(job.id)
    async with pool.acquire() as conn:
        other_raw, _ = await apikeys.create(
            conn, name=f"other-{uuid.uuid4().hex[:6]}", tenant_prefix="other"
        )
    status, body = await _api(running_stack, "GET", "/api/ops/dead-letters", key=other_raw)
    assert status == 200 and all(d["id"] != dl["id"] for d in body["dead_letters"])  # type: ignore[attr-defined]
    status, _ = await _api(running_stack, "GET", f"/api/ops/dead-letters/{dl['id']}", other_raw)
    assert status == 404
    status, _ = await _api(
        running_stack, "POST", f"/api/ops/dead-letters/{dl['id']}/requeue", other_raw
    )
    assert status == 404
    status, body = await _api(running_stack, "GET", "/api/ops/dead-letters?since=yesterday")
    assert status == 400

    # Fix the cause (put the audio in place), requeue: the job now completes.
    async with S3BlobStore.open(running_stack.settings.require_s3()) as store:
        await store.put_bytes(job.object_key, Path(FIXTURES_WAV).read_bytes(), "audio/wav")
    status, body = await _api(running_stack, "POST", f"/api/ops/dead-letters/{dl['id']}/requeue")
    assert status == 200 and body["action"] == "transcription_requeued"

    async def completed() -> bool:
        return await pool.fetchval(
            "SELECT status = 'completed' FROM media_pipeline.audio_files WHERE id = $1", job.id
        )

    await eventually(completed, timeout=120)
    row = await pool.fetchrow("SELECT * FROM media_pipeline.dead_letters WHERE id = $1", dl["id"])
    assert row["requeued_at"] is not None and row["requeue_count"] == 1
    await webhook_inbox.wait_for(str(job.id), timeout=60)


async def test_max_deliveries_fails_the_stuck_job_with_an_event(
    deadletter_service: DeadLetterService, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A consumer that never succeeds: JetStream gives up after MaxDeliver, the advisory is
    recorded, and the job (which nobody would ever redeliver) is failed with an event."""
    job = new_job(await bootstrap_key_id(pool))
    await insert_job(pool, job, publish=False)
    token = uuid.uuid4().hex[:10]
    subject = f"transcribe.test.{token}"  # matched by the stream, by no service's consumer
    durable = f"dltest-{token}"
    await js.add_consumer(
        streams.STREAM_NAME,
        js_api.ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=5,
            max_deliver=2,
        ),
    )
    try:
        await js.publish(subject, encode(record.audio_stored_event(job)))
        sub = await js.pull_subscribe_bind(durable, streams.STREAM_NAME)
        for _ in range(2):
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.nak()

        async def recorded() -> asyncpg.Record | None:
            # JetStream notices the exhausted message when it next tries to deliver it, i.e.
            # on a pull; it then advises instead of delivering.
            with contextlib.suppress(nats.errors.TimeoutError):
                assert not await sub.fetch(1, timeout=0.3)
            return await pool.fetchrow(DL_FOR_JOB, job.id)

        row = await eventually(recorded, timeout=30)
        assert row["kind"] == "max_deliveries"
        assert row["consumer"] == durable
        assert row["deliveries"] == 2
        failed = await pool.fetchrow(
            "SELECT status, last_error FROM media_pipeline.audio_files WHERE id = $1", job.id
        )
        assert failed["status"] == "failed" and "max_deliveries" in failed["last_error"]
        events = await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.outbox"
            " WHERE subject = $1 AND convert_from(payload, 'UTF8') LIKE $2",
            subj.transcript_failed(job.tenant_prefix),
            f"%{job.id}%",
        )
        assert events == 1
    finally:
        await js.delete_consumer(streams.STREAM_NAME, durable)


async def test_requeueing_a_notifier_dead_letter_resends_the_same_webhook(
    running_stack: RunningStack,
    samples_url: str,
    webhook_inbox: WebhookInbox,
    pool: asyncpg.Pool,
    js: JetStreamContext,
) -> None:
    """The notifier's side: the original TranscriptReady goes out again with a new
    Nats-Msg-Id, so the receiver gets the same webhook-id once more."""
    tenant = f"dln{uuid.uuid4().hex[:8]}"
    job = await submit(running_stack.base_url, samples_url, tenant)
    (first,) = await webhook_inbox.wait_for(job, timeout=120)
    (ready,) = [
        e
        for e in await cli.events(running_stack.settings, job)
        if e.event_type == "transcript.ready"
    ]
    # As the capture records it when the notifier's consumer gives up on the event.
    dl_id = await dl_repo.insert(
        pool,
        dl_repo.NewDeadLetter(
            kind="max_deliveries", stream=streams.STREAM_NAME, consumer=streams.NOTIFIER_DURABLE,
            stream_seq=ready.seq, deliveries=20, reason=None, subject=ready.subject,
            event_type="transcript.ready", event_id=ready.json()["event_id"],
            audio_file_id=uuid.UUID(job), tenant_prefix=tenant, payload=ready.data,
            advisory={}, occurred_at=None,
        ),
    )  # fmt: skip
    assert dl_id is not None
    lines = await requeue_many(running_stack.settings, [dl_id], all_open=False)
    assert lines == [f"{dl_id}: event_republished"]
    deliveries = await webhook_inbox.wait_for(job, count=2, timeout=60)
    assert deliveries[1]["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    # Requeued once: no longer open, so `requeue --all` would leave it alone.
    assert (
        await pool.fetchval(
            "SELECT requeue_count FROM media_pipeline.dead_letters WHERE id = $1", dl_id
        )
        == 1
    )
    still_open = await pool.fetch(dl_repo.LIST, None, None, True, uuid.UUID(job), 10)
    assert still_open == []
