"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
import asyncio
import signal
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from libs import db
from libs.settings import Settings


def run_service(
    runner: Callable[[Settings, asyncio.Event], Awaitable[None]],
    settings: Settings,
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """Run a long-lived service until SIGINT/SIGTERM, on uvloop unless told otherwise.

    libuv's loop costs markedly less CPU per socket operation than asyncio's own, which is what
    the services spend their time on: ~25% more ingest submissions/s at 32 concurrent
    (bench/ingest_bench.py) and more transcriptions/s at 64 in flight (bench/transcriber_bench.py).
    """
    if loop_factory is None:
        import uvloop

        loop_factory = uvloop.new_event_loop

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
    conn = await db.connect(settings.require_database_url())
    try:
        return await fn(conn)
    finally:
        await conn.close()


def text(value: str) -> str:
    """argparse `type=` of an argument that is text (a key id or hint, a user's e-mail, a
    category name), not a file path: UTF-8 without control characters. Bytes of argv that are
    not UTF-8 arrive as lone surrogates, which no database or URL can carry."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise argparse.ArgumentTypeError("must be UTF-8 text without control characters")
    return value
