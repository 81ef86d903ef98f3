"""Waking a worker loop on Postgres NOTIFY, with polling as the backstop.

A `Wakeup` holds one LISTEN connection (re-opened when Postgres restarts) and lets a loop sleep
until a notification, a stop request, or a timeout, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from libs.db.errors import DatabaseUnavailable

log = structlog.get_logger()

# How often the idle LISTEN connection is probed, so a dead one is noticed and replaced.
PROBE_INTERVAL = 5.0


async def sleep_until(stop: asyncio.Event, seconds: float, *events: asyncio.Event) -> None:
    """Sleep `seconds`, returning early when `stop` or any of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, *events)]
    try:
        await asyncio.wait(waiters, timeout=max(seconds, 0.0), return_when="FIRST_COMPLETED")
    finally:
        for w in waiters:
            w.cancel()


class Wakeup:
    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._pool = pool
        self._channel = channel
        self.event = asyncio.Event()

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Sleep until notified, stopped or `timeout`; then re-arm."""
        await sleep_until(stop, timeout, self.event)
        self.event.clear()

    @asynccontextmanager
    async def listening(self, stop: asyncio.Event) -> AsyncIterator[Wakeup]:
        task = asyncio.create_task(self._listen(stop))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, stop: asyncio.Event) -> None:
        def on_notify(*_: object) -> None:
            self.event.set()

        while not stop.is_set():
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(self._channel, on_notify)
                    try:
                        # Wake once after (re)connecting: rows may have arrived while deaf.
                        self.event.set()
                        while not stop.is_set() and not conn.is_closed():
                            await sleep_until(stop, PROBE_INTERVAL)
                            await conn.execute("SELECT 1")
                    finally:
                        with contextlib.suppress(DatabaseUnavailable):
                            await conn.remove_listener(self._channel, on_notify)
            except DatabaseUnavailable as exc:
                log.info("listen_reconnect", channel=self._channel, error=str(exc))
                await sleep_until(stop, 1.0)
