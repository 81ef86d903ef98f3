"""A background refresher for the operational gauges.

Prometheus scrapes synchronously, and these numbers need a Postgres query and a JetStream API
call each, so a task refreshes them every few seconds and a scrape reads the last values.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg
import structlog
from nats.js import JetStreamContext

from libs.bus import BusUnavailable, jetstream
from libs.db import DatabaseUnavailable
from libs.observability import metrics as m

log = structlog.get_logger()

JOB_STATES = ("queued", "processing", "completed", "failed")
JOBS_BY_STATE = "SELECT status, count(*) AS n FROM media_pipeline.audio_files GROUP BY status"
OUTBOX_LAG = """
SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS lag
FROM media_pipeline.outbox WHERE published_at IS NULL
"""
# to_regclass: the dead_letters table comes with migration 0005; older schemas report 0.
DEAD_LETTERS_OPEN = """
SELECT CASE WHEN to_regclass('media_pipeline.dead_letters') IS NULL THEN 0
       ELSE (SELECT count(*) FROM media_pipeline.dead_letters WHERE requeued_at IS NULL) END
"""


@dataclass(frozen=True, slots=True)
class ConsumerView:
    stream: str
    consumer: str
    pending: int
    ack_pending: int
    redelivered: int
    ack_floor_stream_seq: int
    delivered_stream_seq: int
    waiting: int


@dataclass(slots=True)
class OpsSnapshot:
    jobs: dict[str, int] = field(default_factory=dict)
    outbox_unpublished: int = 0
    outbox_lag_seconds: float = 0.0
    dead_letters_open: int = 0
    consumers: list[ConsumerView] = field(default_factory=list)
    stream_last_seq: dict[str, int] = field(default_factory=dict)
    stream_messages: dict[str, int] = field(default_factory=dict)


async def consumer_views(js: JetStreamContext, stream: str) -> list[ConsumerView]:
    """Every durable of `stream` with pending, in-flight, redelivered counts and the ack floor:
    the JetStream replacement of the reference's claims table."""
    views = []
    for info in await jetstream.consumers_info(js, stream):
        if not info.config.durable_name:
            continue  # ephemeral (a replay's scan, a nats CLI view): not part of the system
        views.append(
            ConsumerView(
                stream=stream,
                consumer=info.name,
                pending=int(info.num_pending or 0),
                ack_pending=int(info.num_ack_pending or 0),
                redelivered=int(info.num_redelivered or 0),
                ack_floor_stream_seq=int((info.ack_floor.stream_seq if info.ack_floor else 0) or 0),
                delivered_stream_seq=int((info.delivered.stream_seq if info.delivered else 0) or 0),
                waiting=int(info.num_waiting or 0),
            )
        )
    return sorted(views, key=lambda v: v.consumer)


async def collect_snapshot(
    pool: asyncpg.Pool | None, js: JetStreamContext | None, streams: tuple[str, ...]
) -> OpsSnapshot:
    snap = OpsSnapshot()
    if pool is not None:
        async with pool.acquire() as conn:
            for row in await conn.fetch(JOBS_BY_STATE):
                snap.jobs[row["status"]] = int(row["n"])
            outbox = await conn.fetchrow(OUTBOX_LAG)
            snap.outbox_unpublished = int(outbox["n"])
            snap.outbox_lag_seconds = float(outbox["lag"])
            snap.dead_letters_open = int(await conn.fetchval(DEAD_LETTERS_OPEN))
    if js is not None:
        for stream in streams:
            info = await jetstream.stream_info(js, stream)
            if info is None:
                continue
            snap.stream_last_seq[stream] = int(info.state.last_seq)
            snap.stream_messages[stream] = int(info.state.messages)
            snap.consumers.extend(await consumer_views(js, stream))
    return snap


def publish(snap: OpsSnapshot) -> None:
    for state in JOB_STATES:
        m.JOBS_BY_STATE.labels(state=state).set(snap.jobs.get(state, 0))
    m.OUTBOX_UNPUBLISHED.set(snap.outbox_unpublished)
    m.OUTBOX_LAG.set(snap.outbox_lag_seconds)
    m.DEAD_LETTERS_OPEN.set(snap.dead_letters_open)
    for stream, seq in snap.stream_last_seq.items():
        m.STREAM_LAST_SEQ.labels(stream=stream).set(seq)
    for stream, n in snap.stream_messages.items():
        m.STREAM_MESSAGES.labels(stream=stream).set(n)
    # Replaced, not updated: a deleted consumer must not keep reporting its last values.
    for gauge in (
        m.CONSUMER_PENDING,
        m.CONSUMER_ACK_PENDING,
        m.CONSUMER_REDELIVERED,
        m.CONSUMER_ACK_FLOOR,
    ):
        gauge.clear()
    for v in snap.consumers:
        labels = {"stream": v.stream, "consumer": v.consumer}
        m.CONSUMER_PENDING.labels(**labels).set(v.pending)
        m.CONSUMER_ACK_PENDING.labels(**labels).set(v.ack_pending)
        m.CONSUMER_REDELIVERED.labels(**labels).set(v.redelivered)
        m.CONSUMER_ACK_FLOOR.labels(**labels).set(v.ack_floor_stream_seq)


class OpsCollector:
    def __init__(
        self,
        pool: asyncpg.Pool | None,
        js: JetStreamContext | None,
        streams: tuple[str, ...],
        *,
        interval: float = 10.0,
    ) -> None:
        self._pool = pool
        self._js = js
        self._streams = streams
        self._interval = interval
        self.refreshed = 0

    async def refresh(self) -> OpsSnapshot | None:
        try:
            snap = await collect_snapshot(self._pool, self._js, self._streams)
        except DatabaseUnavailable as exc:
            m.COLLECTOR_ERRORS.labels(source="postgres").inc()
            log.warning("ops_collector_failed", source="postgres", error=str(exc))
            return None
        except BusUnavailable as exc:
            m.COLLECTOR_ERRORS.labels(source="nats").inc()
            log.warning("ops_collector_failed", source="nats", error=str(exc))
            return None
        publish(snap)
        self.refreshed += 1
        return snap

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
