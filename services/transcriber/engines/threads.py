"""Running a blocking engine call in a thread, so the event loop (consumption, heartbeats, other
jobs) keeps running, and cancelling it cleanly.

A thread cannot be interrupted: on cancellation the call is asked to stop (the `cancelled`
event it polls between chunks) rather than work on for nobody, and the caller's slot is held
until the thread has returned, so a cancelled job never overlaps the next one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_cancellable(slot: asyncio.Semaphore, blocking: Callable[[threading.Event], T]) -> T:
    """`blocking(cancelled)` in a thread, one per free place in `slot`."""
    cancelled = threading.Event()
    async with slot:
        work = asyncio.ensure_future(asyncio.to_thread(blocking, cancelled))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled.set()
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # retrieve it, so asyncio does not log it as unhandled
            raise
