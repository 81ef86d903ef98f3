"""Helpers shared by the CLI modules."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from libs.settings import Settings


def run_service(
    runner: Callable[[Settings, asyncio.Event], Awaitable[None]],
    settings: Settings,
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(settings, stop)

    with asyncio.Runner(loop_factory=loop_factory) as loop_runner:
        loop_runner.run(main())
    return 0


async def with_conn(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(settings.require_database_url())
    try:
        return await fn(conn)
    finally:
        await conn.close()
