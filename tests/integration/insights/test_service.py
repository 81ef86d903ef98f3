"""services/insights against real Postgres, NATS and SeaweedFS: a completed transcript gets its
categories and insights (or `not_configured`), stored once, announced through the outbox and
delivered as a signed `transcription.insights` webhook; the chat model being unavailable, a
job deleted meanwhile and redeliveries end the way docs/insights.md says."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext

from libs import bus
from libs.blobstore import BlobNotFound, S3BlobStore
from libs.bus import Pause, Retry
from libs.categories import rules
from libs.categories import store as categories
from libs.contracts import InsightsReady, encode, insights_ready_decoder, streams, subjects
from libs.deadletters import records as dead_letters
from libs.deadletters.requeue import requeue
from libs.insights import store
from libs.insights.document import InsightsDocument
from libs.jobs import deletion
from libs.layout import insights_key
from libs.llm import template as templates
from libs.llm.insights import InsightsFailed, ModelMisconfigured, ModelUnavailable
from libs.outbox import OutboxRelay
from libs.safehttp import SafeHttpClient, parse_allowlist
from services.insights.worker import InsightsWorker
from services.notifier.policy import DeliveryPolicy
from services.notifier.worker import Deliverer, Scheduler
from tests.integration.insights.harness import (
    CANCEL_CALL,
    Completed,
    FakeModel,
    complete_job,
    delivery,
    insights,
    transcript,
)
from tests.integration.notifier.harness import Key, make_key, receiver
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration

CANCEL_RULE = {"said": ["cancel my subscription"], "by": "customer"}
NOTICE_RULE = {"not_said": ["this call is recorded"], "by": "agent", "first_seconds": 30}


async def _key(pool: asyncpg.Pool, webhook_url: str | None = None) -> Key:
    key = await make_key(pool, webhook_url=webhook_url)
    async with pool.acquire() as conn:
        await categories.put(conn, key.id, "cancellation", rules.parse(CANCEL_RULE))
        await categories.put(conn, key.id, "no_recording_notice", rules.parse(NOTICE_RULE))
    return key


def _worker(pool: asyncpg.Pool, objects: S3BlobStore, model: FakeModel | None) -> InsightsWorker:
    return InsightsWorker(pool, objects, model=model)


async def _announced(pool: asyncpg.Pool, job: Completed) -> list[InsightsReady]:
    rows = await pool.fetch(
        "SELECT payload FROM media_pipeline.outbox WHERE subject = $1 ORDER BY id",
        subjects.insights_ready(job.key.tenant),
    )
    events = [insights_ready_decoder.decode(r["payload"]) for r in rows]
    return [e for e in events if e.audio_file_id == job.id]


async def _document(objects: S3BlobStore, job: Completed) -> InsightsDocument:
    key = insights_key(job.id, campaign="winback", prefix=job.key.tenant)
    return msgspec.json.decode(await objects.get_bytes(key), type=InsightsDocument)


async def test_without_a_model_a_call_gets_its_categories_and_not_configured(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await _worker(ipool, objects, None).handle(delivery(job.event))

    row = await store.load(ipool, job.job.id)
    assert row is not None
    assert (row.status, row.reason, row.insights) == ("not_configured", "no_model", None)
    # Both rules match, with the times of the evidence (the customer's line for "said").
    matches = {m.name: m for m in await categories.matches_for(ipool, job.job.id)}
    assert set(matches) == {"cancellation", "no_recording_notice"}
    [evidence] = matches["cancellation"].matches
    assert (evidence.start, evidence.end, evidence.role) == (3.5, 6.0, "customer")
    assert "cancel my subscription" in evidence.text
    [ready] = await _announced(ipool, job)
    assert ready.status == "not_configured" and ready.insights is None
    assert {m.name for m in ready.categories} == set(matches)
    assert ready.trace_id == job.event.trace_id and ready.campaign == "winback"
    document = await _document(objects, job)
    assert document.status == "not_configured" and len(document.categories) == 2


async def test_insights_turned_off_for_the_key_are_not_configured(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    async with ipool.acquire() as conn:
        await templates.set_enabled(conn, key.id, False)
    job = await complete_job(ipool, objects, key)
    model = FakeModel()
    await _worker(ipool, objects, model).handle(delivery(job.event))
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("not_configured", "disabled_for_key")
    assert model.asked == []  # nothing of the call went to the model


async def test_with_a_model_insights_are_stored_announced_and_delivered_signed(
    ipool: asyncpg.Pool,
    ijs: JetStreamContext,
    objects: S3BlobStore,
) -> None:
    async with receiver("") as hook:
        key = await _key(ipool, webhook_url=hook.url)
        hook.secret = key.secret
        marker = f"order {secrets.token_hex(4)}"
        turns = (*CANCEL_CALL, ("customer", 9.5, 11.0, f"It is about {marker}."))
        job = await complete_job(ipool, objects, key, call=transcript(turns))
        relay = OutboxRelay(ipool, ijs)
        await relay.run_until_idle()  # TranscriptReady onto the stream
        model = FakeModel()
        consumer = bus.PullConsumer(
            ijs,
            stream=streams.STREAM_NAME,
            durable=streams.INSIGHTS_DURABLE,
            handler=_worker(ipool, objects, model).handle,
            concurrency=4,
        )

        async def evaluated() -> store.InsightsRow | None:
            await consumer.run_until_idle()
            return await store.load(ipool, job.job.id)

        row = await eventually(evaluated)
        assert row.status == "completed" and row.insights == insights()
        assert (row.model, row.prompt_tokens, row.completion_tokens) == ("fake-chat", 120, 30)
        # (The relay published other tests' events too: this job's call has the marker.)
        [(template, sent, campaign)] = [
            asked for asked in model.asked if any(marker in t.text for t in asked[1])
        ]
        assert campaign == "winback" and template == templates.InsightTemplate()
        assert [(t.role, t.start) for t in sent] == [
            ("agent", 0.0),
            ("customer", 3.5),
            ("agent", 6.5),
            ("customer", 9.5),
        ]
        # InsightsReady on the stream, on the tenant's subject.
        await relay.run_until_idle()
        stored = await ijs.get_last_msg(streams.STREAM_NAME, subjects.insights_ready(key.tenant))
        assert stored.data is not None
        ready = insights_ready_decoder.decode(stored.data)
        assert ready.audio_file_id == job.id and ready.status == "completed"
        assert ready.insights == insights()
        # The notifier turns it into a signed transcription.insights webhook.
        notifier = bus.PullConsumer(
            ijs,
            stream=streams.STREAM_NAME,
            durable=streams.NOTIFIER_DURABLE,
            handler=Scheduler(ipool, public_base_url="https://gateway.example").handle,
        )
        await notifier.run_until_idle()
        async with SafeHttpClient(parse_allowlist(hook.hostport)) as http:
            deliverer = Deliverer(ipool, http, policy=DeliveryPolicy(schedule=(0.2,), jitter=0.0))
            await deliverer.run_until_idle()
        hits = [h for h in await hook.wait_hits(job.id, 2) if h.payload]
        by_type = {h.payload["type"]: h for h in hits if h.payload}
        assert set(by_type) == {"transcription.completed", "transcription.insights"}
        webhook = by_type["transcription.insights"]
        assert webhook.verified and webhook.headers["webhook-id"] == ready.event_id
        data = webhook.payload["data"] if webhook.payload else {}
        assert data["status"] == "completed" and data["campaign"] == "winback"
        assert data["insights"]["outcome"] == "retained"
        assert data["recording_id"] == job.job.recording_id and data["reason"] is None
        assert {c["name"] for c in data["categories"]} == {"cancellation", "no_recording_notice"}


async def test_model_unavailable_is_retried_then_completes(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel(script=[ModelUnavailable("429", retry_after=7.0), insights()])
    worker = _worker(ipool, objects, model)
    with pytest.raises(Retry) as retry:
        await worker.handle(delivery(job.event, attempt=1))
    assert retry.value.delay == 7.0  # the server's Retry-After, for the consumer's nak
    assert await store.load(ipool, job.job.id) is None  # nothing written: still pending
    assert await _announced(ipool, job) == []
    await worker.handle(delivery(job.event, attempt=2))
    row = await store.load(ipool, job.job.id)
    assert row is not None and row.status == "completed"
    assert len(await _announced(ipool, job)) == 1


async def test_a_refused_key_pauses_the_consumer_and_fails_no_call(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel(script=[ModelMisconfigured("the model server answered 401")], healthy=False)
    worker = _worker(ipool, objects, model)
    with pytest.raises(Pause) as paused:
        await worker.handle(delivery(job.event, attempt=1))
    assert paused.value.seconds > 0 and paused.value.probe is not None
    assert await paused.value.probe() is False  # still refused: the pause goes on
    assert await store.load(ipool, job.job.id) is None  # nothing failed, still pending
    model.healthy = True
    assert await paused.value.probe() is True
    await worker.handle(delivery(job.event, attempt=2))
    row = await store.load(ipool, job.job.id)
    assert row is not None and row.status == "completed"


async def test_model_unavailable_on_the_last_delivery_fails_with_the_reason(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel(script=[ModelUnavailable("503")])
    await _worker(ipool, objects, model).handle(delivery(job.event, attempt=10, max_deliver=10))
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("failed", "model_unavailable")
    [ready] = await _announced(ipool, job)
    assert ready.status == "failed" and ready.reason == "model_unavailable"
    assert len(ready.categories) == 2  # the categories do not depend on the model


async def test_a_permanent_model_failure_is_recorded_once(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel(script=[InsightsFailed("refused", "the model refused")])
    await _worker(ipool, objects, model).handle(delivery(job.event))
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("failed", "refused")
    assert (await _document(objects, job)).reason == "refused"


async def test_redelivery_and_replay_are_answered_once(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel()
    worker = _worker(ipool, objects, model)
    await asyncio.gather(*(worker.handle(delivery(job.event, attempt=n)) for n in (1, 2)))
    await worker.handle(delivery(job.event, attempt=3))
    # Two racing copies may both ask; a later copy finds the answer and asks nothing.
    assert 1 <= len(model.asked) <= 2
    asked = len(model.asked)
    await worker.handle(delivery(job.event, attempt=1))  # a replay of the same event
    assert len(model.asked) == asked
    rows = await ipool.fetch(
        "SELECT status FROM media_pipeline.insights WHERE audio_file_id = $1", job.job.id
    )
    assert [r["status"] for r in rows] == ["completed"]
    assert len(await categories.matches_for(ipool, job.job.id)) == 2


async def test_a_failed_answer_is_asked_again_when_its_event_comes_back(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    """A replay after a model outage (or once a model is configured) gets insights; only
    completed ones are never asked twice."""
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await _worker(ipool, objects, None).handle(delivery(job.event))
    model = FakeModel(script=[InsightsFailed("refused")])
    worker = _worker(ipool, objects, model)
    await worker.handle(delivery(job.event))  # once a model is configured
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("failed", "refused")
    await worker.handle(delivery(job.event))  # replayed again
    row = await store.load(ipool, job.job.id)
    assert row is not None and row.status == "completed" and len(model.asked) == 2
    assert [e.status for e in await _announced(ipool, job)] == [
        "not_configured",
        "failed",
        "completed",
    ]


async def test_a_job_deleted_before_its_insights_gets_nothing(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await _delete(ipool, objects, job)
    model = FakeModel()
    await _worker(ipool, objects, model).handle(delivery(job.event))
    await _assert_nothing_written(ipool, objects, job)
    assert model.asked == []


async def test_a_job_deleted_while_the_model_thinks_keeps_nothing(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    model = FakeModel(before_answer=lambda: _delete(ipool, objects, job))
    await _worker(ipool, objects, model).handle(delivery(job.event))
    assert len(model.asked) == 1
    await _assert_nothing_written(ipool, objects, job)


class DeletingStore:
    """The bucket, but a DELETE of the job lands while its insights JSON is being uploaded:
    after the service's last look at the job, before its transaction."""

    def __init__(self, pool: asyncpg.Pool, objects: S3BlobStore, job: Completed) -> None:
        self._pool, self._objects, self._job = pool, objects, job

    async def get_bytes(self, key: str) -> bytes:
        return await self._objects.get_bytes(key)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> object:
        await _delete(self._pool, self._objects, self._job)
        return await self._objects.put_bytes(key, data, content_type)

    async def delete(self, key: str) -> None:
        await self._objects.delete(key)


async def test_a_job_deleted_during_the_upload_keeps_nothing(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    worker = InsightsWorker(ipool, DeletingStore(ipool, objects, job), model=FakeModel())
    await worker.handle(delivery(job.event))
    # The transaction found the job deleted: no row, no matches, no event; the JSON written
    # meanwhile went back to the deletion and is gone.
    await _assert_nothing_written(ipool, objects, job)


async def test_delete_after_insights_removes_the_row_the_matches_and_the_json(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await _worker(ipool, objects, FakeModel()).handle(delivery(job.event))
    assert await store.load(ipool, job.job.id) is not None
    await _document(objects, job)
    await _delete(ipool, objects, job)
    assert await store.load(ipool, job.job.id) is None
    assert await categories.matches_for(ipool, job.job.id) == ()
    with pytest.raises(BlobNotFound):
        await _document(objects, job)


async def test_a_missing_transcript_fails_without_a_crash_loop(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await objects.delete(job.event.keys.json)
    model = FakeModel()
    await _worker(ipool, objects, model).handle(delivery(job.event))
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("failed", "transcript_unavailable")
    assert model.asked == []


async def _delete(pool: asyncpg.Pool, objects: S3BlobStore, job: Completed) -> None:
    async with pool.acquire() as conn:
        made = await deletion.request(
            conn, job.job.id, api_key_id=job.key.id, requested_by="test", reason="api"
        )
    assert made is not None
    assert await deletion.finish(pool, objects, job.job.id)


async def _assert_nothing_written(pool: asyncpg.Pool, objects: S3BlobStore, job: Completed) -> None:
    assert await store.load(pool, job.job.id) is None
    assert await categories.matches_for(pool, job.job.id) == ()
    assert await _announced(pool, job) == []
    with pytest.raises(BlobNotFound):
        await _document(objects, job)


async def test_a_dead_insights_ready_is_requeued_like_the_other_results(
    ipool: asyncpg.Pool, ijs: JetStreamContext, objects: S3BlobStore
) -> None:
    """The notifier gave up on an InsightsReady: requeueing the dead letter publishes the same
    event again (same event_id, so the same webhook-id), as for transcript results."""
    key = await _key(ipool)
    job = await complete_job(ipool, objects, key)
    await _worker(ipool, objects, None).handle(delivery(job.event))
    [ready] = await _announced(ipool, job)
    subject = subjects.insights_ready(key.tenant)
    dl_id = await dead_letters.insert(
        ipool,
        dead_letters.NewDeadLetter(
            kind="max_deliveries", stream=streams.STREAM_NAME, consumer=streams.NOTIFIER_DURABLE,
            stream_seq=10_000 + secrets.randbelow(10_000), deliveries=20, reason=None,
            subject=subject, event_type="insights.ready", event_id=ready.event_id,
            audio_file_id=job.job.id, tenant_prefix=key.tenant, payload=encode(ready),
            advisory={}, occurred_at=None,
        ),
    )  # fmt: skip
    assert dl_id is not None
    row = await dead_letters.get(ipool, dl_id, api_key_id=None)
    assert await requeue(ipool, ijs, row) == "event_republished"
    stored = await ijs.get_last_msg(streams.STREAM_NAME, subject)
    assert stored.data is not None
    assert insights_ready_decoder.decode(stored.data).event_id == ready.event_id
