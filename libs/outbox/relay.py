"""The outbox relay: publishes committed events to JetStream, then marks them published.

Rows are published with `Nats-Msg-Id` = event id, so a row re-published after a crash between
the PubAck and the UPDATE is dropped by JetStream's de-duplication window (and beyond it,
consumers are idempotent). Several relays may run at once: rows are claimed with SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from nats.js import JetStreamContext

from libs.bus import BusUnavailable, jetstream
from libs.db import DatabaseUnavailable
from libs.db.listen import Wakeup, sleep_until
from libs.outbox import published

log = structlog.get_logger()

CHANNEL = "media_pipeline_outbox"

CLAIM_BATCH = """
SELECT id, event_id, subject, payload, headers
FROM media_pipeline.outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE media_pipeline.outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])"
RECORD_FAILURE = """
UPDATE media_pipeline.outbox SET attempts = attempts + 1, last_error = left($2, 500)
WHERE id IN (SELECT id FROM media_pipeline.outbox WHERE published_at IS NULL ORDER BY id LIMIT $1)
"""
PURGE_PUBLISHED = """
DELETE FROM media_pipeline.outbox
WHERE published_at IS NOT NULL AND published_at < now() - make_interval(days => $1)
"""
LAG = """
SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_seconds
FROM media_pipeline.outbox WHERE published_at IS NULL
"""


class PublishFailed(RuntimeError):
    pass


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        batch_size: int = 200,
        publish_timeout: float = 5.0,
        poll_interval: float = 2.0,
        retention_days: int = 7,
    ) -> None:
        self._pool = pool
        self._js = js
        self._batch_size = batch_size
        self._publish_timeout = publish_timeout
        # NOTIFY is the fast path; polling covers notifications lost while LISTEN reconnects.
        self._poll_interval = poll_interval
        self._retention_days = retention_days
        self.published = 0

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_BATCH, self._batch_size)
            if not rows:
                return 0
            ids = [r["id"] for r in rows]
            # A failed publish raises out of the transaction: the rows stay unpublished.
            positions = await asyncio.gather(*(self._publish(r) for r in rows))
            # Where each job's events are, so a deletion can erase them (published.py).
            events = [(r["subject"], bytes(r["payload"])) for r in rows]
            await published.record(conn, events, positions)
            await conn.execute(MARK_PUBLISHED, ids)
        self.published += len(rows)
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> tuple[str, int]:
        headers: dict[str, Any] = dict(row["headers"] or {})
        try:
            return await jetstream.publish(
                self._js,
                row["subject"],
                bytes(row["payload"]),
                headers=headers,
                timeout=self._publish_timeout,
            )
        except BusUnavailable as exc:
            raise PublishFailed(f"publish of event {row['event_id']} failed: {exc!r}") from exc

    async def run_until_idle(self) -> int:
        total = 0
        while (n := await self.publish_pending()) > 0:
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        async with Wakeup(self._pool, CHANNEL).listening(stop) as wakeup:
            while not stop.is_set():
                try:
                    n = await self.publish_pending()
                    failures = 0
                    if n == self._batch_size:
                        continue
                    if loop.time() - last_purge > 3600:
                        await self._pool.execute(PURGE_PUBLISHED, self._retention_days)
                        last_purge = loop.time()
                except PublishFailed as exc:
                    failures += 1
                    log.warning("outbox_publish_failed", error=str(exc), failures=failures)
                    await self._note_failure(str(exc))
                except DatabaseUnavailable as exc:
                    failures += 1
                    log.warning("outbox_db_unavailable", error=str(exc), failures=failures)
                if failures:
                    await sleep_until(stop, min(0.2 * 2**failures, 5.0))
                    continue
                await wakeup.wait(stop, self._poll_interval)

    async def _note_failure(self, error: str) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            await self._pool.execute(RECORD_FAILURE, self._batch_size, error)


async def lag(pool: asyncpg.Pool) -> tuple[int, float]:
    row = await pool.fetchrow(LAG)
    assert row is not None
    return int(row["pending"]), float(row["oldest_seconds"])
