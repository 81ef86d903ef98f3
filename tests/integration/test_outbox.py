"""The outbox relay against real Postgres and nats-server."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import nats
import pytest

from libs import outbox
from libs.contracts import TranscriptionFailed, new_event_id, streams, subjects, utcnow
from libs.outbox import OutboxRelay
from libs.settings import Settings
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


def _event(tenant: str = "outbox-test") -> TranscriptionFailed:
    return TranscriptionFailed(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=str(uuid.uuid4()),
        tenant=tenant,
        error_code="x",
        detail="y",
        attempts=1,
        permanent=True,
    )


async def _published(pool: asyncpg.Pool, event_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT published_at IS NOT NULL FROM media_pipeline.outbox WHERE event_id = $1",
            uuid.UUID(event_id),
        )
    )


async def test_enqueue_refuses_to_run_outside_a_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside"):
            await outbox.enqueue(conn, _event(), "transcribe.transcript.failed.x")


async def test_relay_publishes_with_msg_id_and_marks_rows(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    nc = await nats.connect(settings.nats_servers)
    try:
        js = nc.jetstream()
        event = _event()
        subject = subjects.transcript_failed(event.tenant)
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event, subject)
        # Other relays may share this database (the in-process stack): any of them may win.
        relay = OutboxRelay(pool, js)
        await relay.run_until_idle()
        await eventually(lambda: _published(pool, event.event_id), timeout=10)
        msg = await js.get_last_msg(streams.STREAM_NAME, subject)
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event.event_id

        # A crash between PubAck and UPDATE re-publishes the row: JetStream drops the duplicate.
        await pool.execute(
            "UPDATE media_pipeline.outbox SET published_at = NULL WHERE event_id = $1",
            uuid.UUID(event.event_id),
        )
        await relay.run_until_idle()
        await eventually(lambda: _published(pool, event.event_id), timeout=10)
        again = await js.get_last_msg(streams.STREAM_NAME, subject)
        assert again.seq == msg.seq
    finally:
        await nc.close()


async def test_rolled_back_transactions_publish_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    event = _event()

    class Boom(Exception):
        pass

    async def write_then_fail() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event, subjects.transcript_failed(event.tenant))
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.outbox WHERE event_id = $1",
            uuid.UUID(event.event_id),
        )
        == 0
    )


async def test_relay_wakes_on_notify(settings: Settings, pool: asyncpg.Pool) -> None:
    nc = await nats.connect(settings.nats_servers)
    stop = asyncio.Event()
    # A long poll interval proves the wake-up comes from LISTEN/NOTIFY, not from polling.
    relay = OutboxRelay(pool, nc.jetstream(), poll_interval=3600)
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: _true_after_listen(relay), timeout=10)
        event = _event()
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event, subjects.transcript_failed(event.tenant))
        await eventually(lambda: _published(pool, event.event_id), timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await nc.close()


async def _true_after_listen(relay: OutboxRelay) -> bool:
    # The relay publishes once right after LISTEN is established; give it that first pass.
    return True


async def test_relay_keeps_working_through_a_nats_outage(
    nats_server: object, settings: Settings, pool: asyncpg.Pool
) -> None:
    from libs.bus import connect

    nc = await connect(settings.nats_servers, name="outage-test")
    stop = asyncio.Event()
    relay = OutboxRelay(pool, nc.jetstream(), poll_interval=0.2, publish_timeout=1.0)
    task = asyncio.create_task(relay.run(stop))
    try:
        await nats_server.stop()  # type: ignore[attr-defined]
        event = _event()
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event, subjects.transcript_failed(event.tenant))
        await eventually(
            lambda: pool.fetchval(
                "SELECT attempts > 0 FROM media_pipeline.outbox WHERE event_id = $1",
                uuid.UUID(event.event_id),
            ),
            timeout=20,
        )
        assert not await _published(pool, event.event_id)
        await nats_server.start()  # type: ignore[attr-defined]
        await eventually(lambda: _published(pool, event.event_id), timeout=30)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await nc.close()
