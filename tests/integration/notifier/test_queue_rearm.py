"""The queue's re-arm rules on the real table, where a replay, a resend or a deletion meets an
attempt in flight (libs/webhooks/queue.py: SCHEDULE, CLAIM_DUE, FINISH; libs/webhooks/admin.py)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js import JetStreamContext

from libs.webhooks import admin, queue
from services.notifier.policy import DeliveryPolicy
from tests.integration.notifier.harness import (
    Job,
    Notifier,
    delivery_rows,
    make_job,
    make_key,
    publish,
    ready_event,
    receiver,
)
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


async def _scheduled(npool: asyncpg.Pool) -> tuple[queue.NewDelivery, Job]:
    key = await make_key(npool, webhook_url=None)
    url = f"https://receiver.example/hooks/{uuid.uuid4().hex}"
    job = await make_job(npool, key, callback_url=url)
    row = queue.NewDelivery(
        event_id=uuid.uuid4(),
        event_type="transcription.completed",
        audio_file_id=job.id,
        api_key_id=key.id,
        endpoint_url=url,
        payload=b'{"type":"transcription.completed","data":{}}',
    )
    await queue.schedule(npool, [row])
    return row, job


async def claim(npool: asyncpg.Pool, job: Job) -> list[queue.Due]:
    """What a notifier claims now, of this job's rows only (other tests' rows stay put)."""
    others = await npool.fetch(
        "SELECT DISTINCT endpoint_url FROM media_pipeline.webhook_deliveries "
        "WHERE audio_file_id IS DISTINCT FROM $1",
        job.id,
    )
    return await queue.claim_due(npool, 10, 30.0, [r["endpoint_url"] for r in others])


async def _succeed(npool: asyncpg.Pool, delivery_id: int) -> None:
    async with npool.acquire() as conn:
        await queue.finish(
            conn, delivery_id, "succeeded", status_code=200, error=None, latency_ms=1
        )


async def test_a_handed_back_attempt_carries_the_replay_no_extra_round(
    npool: asyncpg.Pool,
) -> None:
    """A replay during an attempt that is then handed back (a notifier stopping mid-POST, or
    a lease that ran out): the next attempt sends the same body with the same webhook-id, so
    its success ends the delivery. It used to start one more round (a second send)."""
    row, job = await _scheduled(npool)
    [due] = await claim(npool, job)
    await queue.schedule(npool, [row])  # the replay, while the attempt is in flight
    await queue.release_leases(npool, [due.id])  # the notifier stops mid-POST
    [again] = await claim(npool, job)
    await _succeed(npool, again.id)
    [done] = await delivery_rows(npool, job)
    assert (done["status"], done["rearm"]) == ("succeeded", False)
    assert await claim(npool, job) == []


async def test_a_deleted_jobs_rearmed_delivery_is_not_sent_after_its_attempt(
    npool: asyncpg.Pool,
) -> None:
    """A replay marks the in-flight row `rearm`; the job is deleted (the row is scrubbed and
    cancelled) before the attempt ends. The attempt's end must not start a new round: it
    would POST the scrubbed body of a deleted job."""
    row, job = await _scheduled(npool)
    [due] = await claim(npool, job)
    await queue.schedule(npool, [row])
    async with npool.acquire() as conn:
        await queue.scrub_for_deleted_job(conn, job.id)
    await _succeed(npool, due.id)
    [done] = await delivery_rows(npool, job)
    assert done["status"] != "pending"
    assert await claim(npool, job) == []


async def test_a_resend_during_an_attempt_waits_for_its_end(npool: asyncpg.Pool) -> None:
    """Resend (the API's and the CLI's) while the delivery's attempt is in flight: the row is
    not handed to a second concurrent POST; the new round starts when the attempt ends."""
    _, job = await _scheduled(npool)
    [due] = await claim(npool, job)
    await admin.resend(npool, admin.OPERATOR, due.id)
    assert await claim(npool, job) == []  # still in flight
    await _succeed(npool, due.id)
    [rearmed] = await delivery_rows(npool, job)
    assert (rearmed["status"], rearmed["schedule_step"]) == ("pending", 0)
    [again] = await claim(npool, job)
    assert again.id == due.id


async def test_a_resend_of_a_waiting_or_finished_delivery_starts_now(npool: asyncpg.Pool) -> None:
    _, job = await _scheduled(npool)
    [due] = await claim(npool, job)
    async with npool.acquire() as conn:
        await queue.reschedule(
            conn, due.id, status_code=503, error="HTTP 503", latency_ms=1, delay=600.0
        )
    await admin.resend(npool, admin.OPERATOR, due.id)
    [due] = await claim(npool, job)
    await _succeed(npool, due.id)
    await admin.resend(npool, admin.OPERATOR, due.id)
    [row] = await delivery_rows(npool, job)
    assert (row["status"], row["schedule_step"], row["rearm"]) == ("pending", 0, False)
    assert [d.id for d in await claim(npool, job)] == [due.id]


async def test_a_deleted_jobs_deliveries_are_not_recovered_or_resent(npool: asyncpg.Pool) -> None:
    """A deleted job's deliveries keep their log but lose their bodies; recover (since a time)
    re-armed its failed ones and resend any of them, POSTing the scrubbed body
    ({"deleted": true}) as a transcription.completed webhook. Its transcription.deleted webhook
    stays recoverable."""
    row, job = await _scheduled(npool)
    [due] = await claim(npool, job)
    async with npool.acquire() as conn:
        await queue.finish(conn, due.id, "failed", status_code=500, error="HTTP 500", latency_ms=1)
        await conn.execute(
            "UPDATE media_pipeline.audio_files SET status = 'deleted' WHERE id = $1", job.id
        )
        await queue.scrub_for_deleted_job(conn, job.id)
    deleted = queue.NewDelivery(
        event_id=uuid.uuid4(),
        event_type="transcription.deleted",
        audio_file_id=job.id,
        api_key_id=job.key.id,
        endpoint_url=row.endpoint_url,
        payload=b'{"type":"transcription.deleted","data":{}}',
    )
    await queue.schedule(npool, [deleted])
    [_, gone] = await delivery_rows(npool, job)
    await npool.execute(
        "UPDATE media_pipeline.webhook_deliveries SET status = 'failed' WHERE id = $1", gone["id"]
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    assert await admin.recover(npool, admin.Scope.key(job.key.id), since) == 1
    assert [d.event_type for d in await claim(npool, job)] == ["transcription.deleted"]
    with pytest.raises(admin.JobDeleted):
        await admin.resend(npool, admin.OPERATOR, due.id)
    [scrubbed, _] = await delivery_rows(npool, job)
    assert scrubbed["status"] == "failed"


async def test_the_lease_outlasts_a_long_post_timeout(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    """WEBHOOK_TIMEOUT above the policy's lease (60 s): the row must stay leased as long as
    its POST may take, or it is claimed and POSTed again beside the attempt still hanging."""
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.gate = asyncio.Event()
        job = await make_job(npool, key, callback_url=r.url)
        notifier.settings = replace(notifier.settings, webhook_timeout=90.0)
        notifier.configure(r.hostport, policy=DeliveryPolicy(lease_seconds=60.0)).start()
        event = ready_event(job)
        await publish(js, event)
        try:

            async def leased() -> asyncpg.Record | None:
                rows = await delivery_rows(npool, job)
                return rows[0] if len(rows) == 1 and rows[0]["leased_at"] is not None else None

            row = await eventually(leased, timeout=10)
            lease = (row["next_attempt_at"] - row["leased_at"]).total_seconds()
            assert lease >= 90.0
        finally:
            r.gate.set()
        await r.wait_accepted(event.event_id)
