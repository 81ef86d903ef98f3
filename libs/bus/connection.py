"""Connecting to NATS: retry the first connect, then let nats-py reconnect forever."""

from __future__ import annotations

import asyncio

import nats
import structlog
from nats.aio.client import Client as NATS

from libs.bus.errors import BusUnavailable

log = structlog.get_logger()


async def connect(servers: list[str], *, name: str, connect_deadline: float = 30.0) -> NATS:
    """Connect to NATS; keeps trying until `connect_deadline` so services can start before NATS.

    Once connected, the client reconnects on its own for ever: a service must outlive a NATS
    restart, and outbox rows wait in Postgres in the meantime.
    """

    async def on_disconnect() -> None:
        log.warning("nats_disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", client=name, error=str(exc))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_deadline
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            if loop.time() + delay > deadline:
                raise BusUnavailable(
                    f"cannot connect to NATS at {','.join(servers)}: {exc}"
                ) from exc
            log.info("nats_connect_retry", client=name, error=str(exc), delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
