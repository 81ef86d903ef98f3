"""The ingest process's background sweeper: carries out retention (expired jobs deleted,
expired audio removed: libs/jobs/retention.py) and finishes deletions whose objects could not
be removed at once (object storage was down, or the requesting process died); erases deleted
jobs' events from the stream (libs/outbox/published.py); forgets console sessions and login
attempts nobody needs any more (libs/users).

Safe with any number of ingest replicas: each batch leases its rows with FOR UPDATE SKIP
LOCKED (libs/jobs/deletion.py). `run_until_idle` does the work of one wake-up with no waiting,
for tests and burst runs."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import asyncpg
import structlog

from libs import users
from libs.db import DatabaseUnavailable
from libs.jobs import deletion, retention
from libs.metrics import DELETION_LAG, DELETIONS_PENDING, RETENTION_LAG
from libs.outbox import published

log = structlog.get_logger()

DEFAULT_INTERVAL = 15.0
BATCH = 100


class Sweeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: deletion.ObjectDeleter,
        *,
        interval: float = DEFAULT_INTERVAL,
        batch: int = BATCH,
        eraser: published.MessageEraser | None = None,
        stream_max_age_days: int = 30,
    ) -> None:
        self._pool = pool
        self._store = store
        self._interval = interval
        self._batch = batch
        # Deleted jobs' events in the stream (None: left for a sweeper that has NATS).
        self._eraser = eraser
        self._stream_max_age_days = stream_max_age_days

    async def run_until_idle(self) -> deletion.FinishRun:
        """Carry out every expiry that has passed, then finish every deletion that is due now
        (until a batch comes back empty or only with rows that stay pending); updates the lag
        gauges."""
        expired = retention.Expired()
        while True:
            jobs = await retention.expire_jobs(self._pool, self._store, limit=self._batch)
            audio = await retention.expire_audio(self._pool, self._store, limit=self._batch)
            expired = retention.Expired(expired.jobs + jobs, expired.audio + audio)
            if jobs < self._batch and audio < self._batch:
                break
        if expired.jobs or expired.audio:
            log.info("retention_swept", jobs=expired.jobs, audio=expired.audio)
        RETENTION_LAG.set(await retention.lag(self._pool))
        finished = pending = 0
        while True:
            run = await deletion.finish_due(self._pool, self._store, limit=self._batch)
            finished += run.finished
            pending += run.pending
            if run.finished + run.pending < self._batch or run.finished == 0:
                break
        if finished or pending:
            log.info("deletions_swept", finished=finished, still_pending=pending)
        count, oldest = await deletion.lag(self._pool)
        DELETIONS_PENDING.set(count)
        DELETION_LAG.set(oldest)
        await published.sweep(
            self._pool, self._eraser, batch=self._batch, max_age_days=self._stream_max_age_days
        )
        # Console sessions and login attempts nobody needs any more.
        await users.purge(self._pool, now=datetime.now(UTC))
        return deletion.FinishRun(finished=finished, pending=pending)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_until_idle()
            except DatabaseUnavailable as exc:
                log.warning("sweeper_db_unavailable", error=str(exc))
            except Exception:
                # A bug must not end the sweeping for the life of the process.
                log.exception("sweeper_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
