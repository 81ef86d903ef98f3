"""Webhook delivery on real Postgres + NATS to a real receiver verifying with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

from embedded.postgres import PostgresServer
from libs import db
from libs.provision import migrate_database
from libs.settings import Settings
from services.notifier.policy import DeliveryPolicy
from tests.integration.notifier.harness import (
    FAST,
    Notifier,
    attempt_rows,
    delivery_rows,
    failed_event,
    make_job,
    make_key,
    publish,
    ready_event,
    receiver,
)
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


async def test_completed_event_is_signed_and_carries_the_contract(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        r.secret = key.secret
        notifier.configure(r.hostport).start()
        job = await make_job(npool, key, text="hello this is a test")
        event = ready_event(job)
        await publish(js, event)
        [hit] = await r.wait_accepted(event.event_id)

    assert hit.headers["webhook-id"] == event.event_id
    assert hit.headers["Content-Type"] == "application/json"
    body = hit.payload
    assert body is not None and body["type"] == "transcription.completed"
    data = body["data"]
    assert data["audio_file_id"] == str(job.id)
    assert data["recording_id"] == job.recording_id
    assert data["status"] == "completed"
    assert data["transcript"] == "hello this is a test"
    assert data["transcript_truncated"] is False
    assert data["transcript_url"] == f"https://gateway.example/api/media/transcript/{job.id}.txt"
    assert data["b2_transcript_json_key"] == job.json_key
    assert data["b2_transcript_txt_key"] == job.txt_key
    assert data["b2_audio_key"].endswith(f"{job.id}.wav")

    async def recorded() -> list[asyncpg.Record] | None:
        rows = await delivery_rows(npool, job)
        return rows if rows and rows[0]["status"] == "succeeded" else None

    [row] = await eventually(recorded, timeout=5)
    [attempt] = await attempt_rows(npool, row["id"])
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["latency_ms"] >= 0


async def test_failure_event_is_delivered_with_the_error(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        job = await make_job(npool, key, completed=False, callback_url=r.url)
        notifier.configure(r.hostport).start()
        event = failed_event(job)
        await publish(js, event)
        [hit] = await r.wait_accepted(event.event_id)
    assert hit.payload is not None and hit.payload["type"] == "transcription.failed"
    data = hit.payload["data"]
    assert data["status"] == "failed"
    assert data["audio_file_id"] == str(job.id)
    assert data["error"] == {
        "code": "undecodable_audio",
        "detail": "the file is not audio",
        "permanent": True,
        "attempts": 1,
    }
    assert "transcript" not in data


async def test_callback_and_key_endpoint_both_get_the_same_webhook_id(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as key_r:
        key = await make_key(npool, webhook_url=key_r.url)
        key_r.secret = key.secret
        async with receiver(key.secret) as cb_r:
            job = await make_job(npool, key, callback_url=cb_r.url)
            notifier.configure(key_r.hostport, cb_r.hostport).start()
            event = ready_event(job)
            await publish(js, event)
            await cb_r.wait_accepted(event.event_id)
            await key_r.wait_accepted(event.event_id)


async def test_receiver_down_then_up(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        await r.down()
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(
            r.hostport, policy=DeliveryPolicy(schedule=(0.3, 0.3, 0.3, 0.3, 0.3), jitter=0.0)
        ).start()
        await publish(js, ready_event(job))

        async def failed_twice() -> bool:
            rows = await delivery_rows(npool, job)
            return bool(rows) and rows[0]["attempts"] >= 2

        await eventually(failed_twice, timeout=10)
        await r.up()
        [hit] = await r.wait_hits(str(job.id), 1)
        assert hit.verified
    [row] = await delivery_rows(npool, job)

    async def succeeded() -> bool:
        [row] = await delivery_rows(npool, job)
        return bool(row["status"] == "succeeded")

    await eventually(succeeded, timeout=5)
    attempts = await attempt_rows(npool, row["id"])
    assert [a["status_code"] for a in attempts][-1] == 200
    assert all(a["status_code"] is None for a in attempts[:-1])
    assert "connect_failed" in attempts[0]["error"]


async def test_only_2xx_counts_and_redirects_are_not_followed(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.script = [(302, {"Location": r.url + "/elsewhere"}), (500, {}), (204, {})]
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport).start()
        await publish(js, ready_event(job))
        hits = await r.wait_hits(str(job.id), 3)
    assert [h.status for h in hits] == [302, 500, 204]
    assert {h.path for h in hits} == {"/hooks"}  # the redirect target was never requested

    async def succeeded() -> bool:
        [row] = await delivery_rows(npool, job)
        return bool(row["status"] == "succeeded")

    await eventually(succeeded, timeout=5)


async def test_429_retry_after_is_honoured(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.script = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "1"})]
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport, policy=FAST).start()
        await publish(js, ready_event(job))
        hits = await r.wait_hits(str(job.id), 3)
    assert [h.status for h in hits] == [429, 503, 200]
    # The schedule alone says 0.2 s; the receiver asked for 1 s each time.
    assert hits[1].at - hits[0].at >= 0.95
    assert hits[2].at - hits[1].at >= 0.95


async def test_410_disables_the_key_endpoint_until_its_owner_re_enables_it(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        r.secret = key.secret
        r.script = [(410, {})]
        notifier.configure(r.hostport).start()
        first = await make_job(npool, key)
        await publish(js, ready_event(first))
        await r.wait_hits(str(first.id), 1)

        async def disabled() -> asyncpg.Record | None:
            return await npool.fetchrow(
                "SELECT * FROM media_pipeline.api_keys WHERE id = $1"
                " AND webhook_disabled_at IS NOT NULL",
                key.id,
            )

        row = await eventually(disabled, timeout=5)
        assert row["webhook_disabled_reason"] == "410 Gone"
        [d] = await delivery_rows(npool, first)
        assert d["status"] == "cancelled" and d["attempts"] == 1  # no retry after 410

        # While disabled, a new event is kept (cancelled) but not sent.
        second = await make_job(npool, key)
        await publish(js, ready_event(second))

        async def kept() -> list[asyncpg.Record] | None:
            return await delivery_rows(npool, second) or None

        [d2] = await eventually(kept, timeout=5)
        assert d2["status"] == "cancelled" and d2["last_error"] == "endpoint disabled"
        assert r.for_job(str(second.id)) == []


async def test_restart_in_the_middle_of_a_backoff_still_delivers_on_time(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    """The 5-hour backoff, scaled down: 3 s. The notifier dies 0.3 s into it; a new one
    delivers at the scheduled time, neither at once nor late."""
    backoff = 3.0
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.script = [(500, {})]
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport, policy=DeliveryPolicy(schedule=(backoff,), jitter=0.0))
        notifier.start()
        await publish(js, ready_event(job))
        [first] = await r.wait_hits(str(job.id), 1)
        await asyncio.sleep(0.3)  # let the retry be written, as a crash mid-backoff would
        await notifier.stop()
        assert time.monotonic() - first.at < backoff
        [row] = await delivery_rows(npool, job)
        assert row["status"] == "pending" and row["attempts"] == 1
        notifier.start()
        hits = await r.wait_hits(str(job.id), 2, timeout=backoff + 10)
    gap = hits[1].at - first.at
    assert backoff - 0.05 <= gap <= backoff + 1.5, gap  # slack: a restart on a busy CI box
    assert hits[1].headers["webhook-id"] == first.headers["webhook-id"]


async def test_replayed_transcript_ready_resends_with_the_same_webhook_id(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport).start()
        event = ready_event(job)
        await publish(js, event)
        await r.wait_accepted(event.event_id)
        await publish(js, event, msg_id=False)  # a replay, e.g. `nats pub` of the stored event
        hits = await r.wait_accepted(event.event_id, count=2)
    assert [h.headers["webhook-id"] for h in hits] == [event.event_id] * 2
    assert hits[0].payload == hits[1].payload
    [row] = await delivery_rows(npool, job)  # one delivery, two rounds

    async def two_attempts() -> bool:
        [row] = await delivery_rows(npool, job)
        return bool(row["attempts"] == 2 and row["status"] == "succeeded")

    await eventually(two_attempts, timeout=5)
    assert [a["attempt"] for a in await attempt_rows(npool, row["id"])] == [1, 2]


async def test_a_replay_during_the_first_attempt_is_sent_after_it(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    """The replay arrives while attempt 1 is being POSTed: the end of that attempt must not
    overwrite the replay's new round (it did: the replay was lost when the receiver was slow)."""
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.gate = asyncio.Event()
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport).start()
        event = ready_event(job)
        await publish(js, event)
        try:

            async def in_flight() -> bool:
                rows = await delivery_rows(npool, job)
                return len(rows) == 1 and rows[0]["leased_at"] is not None

            await eventually(in_flight, timeout=10)
            await publish(js, event, msg_id=False)

            async def replay_noted() -> bool:
                [row] = await delivery_rows(npool, job)
                return bool(row["rearm"])

            await eventually(replay_noted, timeout=10)
        finally:
            r.gate.set()
        hits = await r.wait_accepted(event.event_id, count=2)
    assert [h.headers["webhook-id"] for h in hits] == [event.event_id] * 2

    async def two_rounds_done() -> bool:
        [row] = await delivery_rows(npool, job)
        return bool(row["status"] == "succeeded" and row["attempts"] == 2 and not row["rearm"])

    await eventually(two_rounds_done, timeout=10)


async def test_a_replay_of_a_finished_or_waiting_delivery(npool: asyncpg.Pool) -> None:
    """The queue's rules for a second copy of an event, on the real table: a finished row starts
    a new round now; a row waiting for its retry is left as it is (that retry carries it)."""
    from libs.webhooks import queue

    key = await make_key(npool, webhook_url=None)
    job = await make_job(npool, key, callback_url="https://receiver.example/hooks")
    row = queue.NewDelivery(
        event_id=uuid.uuid4(),
        event_type="transcription.completed",
        audio_file_id=job.id,
        api_key_id=key.id,
        endpoint_url="https://receiver.example/hooks",
        payload=b"{}",
    )
    await queue.schedule(npool, [row])
    [due] = await queue.claim_due(npool, 10, 30.0, [])
    async with npool.acquire() as conn:
        await queue.reschedule(
            conn, due.id, status_code=503, error="HTTP 503", latency_ms=1, delay=600.0
        )
    await queue.schedule(npool, [row])  # the replay, while the retry waits
    [waiting] = await delivery_rows(npool, job)
    assert (waiting["status"], waiting["schedule_step"], waiting["rearm"]) == ("pending", 1, False)
    assert waiting["leased_at"] is None
    assert await queue.claim_due(npool, 10, 30.0, []) == []  # still 600 s away

    await npool.execute(
        "UPDATE media_pipeline.webhook_deliveries SET next_attempt_at = now() WHERE id = $1",
        due.id,
    )
    [due] = await queue.claim_due(npool, 10, 30.0, [])
    async with npool.acquire() as conn:
        await queue.finish(conn, due.id, "succeeded", status_code=200, error=None, latency_ms=1)
    [done] = await delivery_rows(npool, job)
    assert (done["status"], done["attempts"], done["leased_at"]) == ("succeeded", 2, None)

    await queue.schedule(npool, [row])  # a replay of a delivered event: one more round, now
    [again] = await delivery_rows(npool, job)
    assert (again["status"], again["schedule_step"], again["rearm"]) == ("pending", 0, False)
    [due] = await queue.claim_due(npool, 10, 30.0, [])
    assert due.id == again["id"]


async def test_ssrf_blocked_targets_are_never_contacted(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        # Not on the allowlist: loopback is refused at delivery time (ingest checks at submit,
        # but a row written by any other path, or a DNS answer that changed, must not pass).
        job = await make_job(npool, key, callback_url=r.url)
        metadata = await make_job(npool, key, callback_url="http://169.254.169.254/latest/")
        notifier.configure().start()
        await publish(js, ready_event(job))
        await publish(js, ready_event(metadata))

        async def both_failed() -> list[asyncpg.Record] | None:
            rows = [*(await delivery_rows(npool, job)), *(await delivery_rows(npool, metadata))]
            return rows if len(rows) == 2 and all(x["status"] == "failed" for x in rows) else None

        rows = await eventually(both_failed, timeout=10)
        assert r.hits == []
    for row in rows:
        assert row["attempts"] == 1  # permanent: no retries
        assert row["last_error"].startswith("blocked: private_address")
        [attempt] = await attempt_rows(npool, row["id"])
        assert attempt["status_code"] is None


async def test_sustained_failure_auto_disables_the_key_endpoint(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        r.secret = key.secret
        r.script = [(500, {})] * 50
        policy = DeliveryPolicy(
            schedule=(0.1,) * 10, jitter=0.0, disable_after_seconds=0.5, disable_min_failures=4
        )
        notifier.configure(r.hostport, policy=policy).start()
        job = await make_job(npool, key)
        await publish(js, ready_event(job))

        async def disabled() -> asyncpg.Record | None:
            return await npool.fetchrow(
                "SELECT * FROM media_pipeline.api_keys WHERE id = $1"
                " AND webhook_disabled_at IS NOT NULL",
                key.id,
            )

        row = await eventually(disabled, timeout=10)
    assert row["webhook_consecutive_failures"] >= 4
    assert row["webhook_disabled_reason"] == "every attempt failed for too long"
    [d] = await delivery_rows(npool, job)
    assert d["status"] == "cancelled"  # queued retries stop with the endpoint


async def test_a_success_resets_the_failure_streak(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        r.secret = key.secret
        r.script = [(500, {}), (500, {})]
        notifier.configure(r.hostport, policy=DeliveryPolicy(schedule=(1.0, 1.0), jitter=0.0))
        notifier.start()
        job = await make_job(npool, key)
        event = ready_event(job)
        await publish(js, event)

        async def streak() -> bool:
            row = await npool.fetchrow(
                "SELECT * FROM media_pipeline.api_keys WHERE id = $1", key.id
            )
            return bool(row["webhook_consecutive_failures"] == 2 and row["webhook_failing_since"])

        await eventually(streak, timeout=5)
        await r.wait_accepted(event.event_id)

        async def reset() -> bool:
            row = await npool.fetchrow(
                "SELECT * FROM media_pipeline.api_keys WHERE id = $1", key.id
            )
            return bool(
                row["webhook_consecutive_failures"] == 0 and row["webhook_failing_since"] is None
            )

        await eventually(reset, timeout=5)


async def test_a_hanging_receiver_does_not_hold_up_other_endpoints(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as slow, receiver(key.secret) as fast:
        slow.gate = asyncio.Event()
        policy = DeliveryPolicy(schedule=(0.2,), jitter=0.0, concurrency=4, per_endpoint=2)
        # A POST timeout far beyond the wait below: on a loaded machine the fast delivery may
        # take seconds, and the slow POSTs must still be hanging (not timed out) meanwhile.
        notifier.settings = replace(notifier.settings, webhook_timeout=60.0)
        notifier.configure(slow.hostport, fast.hostport, policy=policy).start()
        stuck = [await make_job(npool, key, callback_url=slow.url) for _ in range(6)]
        for job in stuck:
            await publish(js, ready_event(job))

        async def slow_busy() -> bool:
            rows = await npool.fetch(
                "SELECT count(*) AS n FROM media_pipeline.webhook_deliveries"
                " WHERE audio_file_id = ANY($1::uuid[])",
                [j.id for j in stuck],
            )
            return bool(rows[0]["n"] == 6)

        await eventually(slow_busy, timeout=5)
        job = await make_job(npool, key, callback_url=fast.url)
        event = ready_event(job)
        await publish(js, event)
        try:
            # Well inside the 60 s POST timeout that would otherwise free the slots.
            await fast.wait_accepted(event.event_id, timeout=30.0)
            assert len(slow.hits) == 0  # the slow ones are all still hanging
        finally:
            slow.gate.set()  # also lets the receiver shut down promptly if this failed
        await slow.wait_any(6, timeout=10)


async def test_finished_deliveries_are_purged_after_retention(npool: asyncpg.Pool) -> None:
    from libs.safehttp import SafeHttpClient
    from services.notifier.worker import Deliverer

    key = await make_key(npool, webhook_url=None)
    job = await make_job(npool, key)
    insert = """
    INSERT INTO media_pipeline.webhook_deliveries
        (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload, status,
         updated_at)
    VALUES (gen_random_uuid(), 'transcription.completed', $1, $2, $3, '{}'::bytea, $4,
            now() - make_interval(days => $5))
    """
    cases = [
        ("succeeded", 31, "gone"),
        ("failed", 31, "gone"),
        ("failed", 29, "kept"),
        ("pending", 40, "kept"),
    ]
    for i, (status, age, _) in enumerate(cases):
        await npool.execute(insert, job.id, key.id, f"https://h.example/{i}", status, age)
    async with SafeHttpClient() as http:
        await Deliverer(npool, http, policy=DeliveryPolicy(retention_days=30)).purge(batch=1)
    left = {r["endpoint_url"] for r in await delivery_rows(npool, job)}
    assert left == {f"https://h.example/{i}" for i, c in enumerate(cases) if c[2] == "kept"}


async def test_a_postgres_outage_delays_webhooks_but_loses_none(
    js: JetStreamContext, notifier_settings: Settings, tmp_path: Path
) -> None:
    # A Postgres of its own: stopping the session's would break services other tests run.
    async with PostgresServer(tmp_path / "pg") as pg:
        await migrate_database(pg.dsn)
        pool = await db.create_pool(pg.dsn)
        notifier = Notifier(replace(notifier_settings, database_url=pg.dsn))
        try:
            await _outage(pg, pool, js, notifier)
        finally:
            await notifier.stop()
            await pool.close()


async def _outage(
    pg: PostgresServer, pool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(pool, webhook_url=None)
    async with receiver(key.secret) as r:
        pending = await make_job(pool, key, callback_url=r.url)
        fresh = await make_job(pool, key, callback_url=r.url)
        r.script = [(500, {})]  # `pending` is mid-backoff when Postgres goes away
        # A lease of 5 s: an attempt whose outcome Postgres could not take is retried then.
        policy = DeliveryPolicy(schedule=(1.0,), jitter=0.0, lease_seconds=5.0)
        notifier.configure(r.hostport, policy=policy).start()
        await publish(js, ready_event(pending))
        await r.wait_hits(str(pending.id), 1)
        await pg.stop()
        try:
            # Arrives while Postgres is down: it waits in the stream (nak, redelivered).
            await publish(js, ready_event(fresh))
        finally:
            await pg.start()
        await r.wait_hits(str(pending.id), 2, timeout=30)
        await r.wait_hits(str(fresh.id), 1, timeout=30)
    assert r.accepted() and all(h.verified for h in r.hits)
