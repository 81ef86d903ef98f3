"""A cooperative time bound for redaction: the detectors tick a ``Clock`` as they walk the text,
and it raises ``RedactionTimeout`` once ``time.monotonic()`` has passed the caller's deadline.

Detection is linear in the text, so the bound is for hostile or absurd inputs and an overloaded
machine, not for ordinary calls. The caller fails closed on ``RedactionTimeout``: nothing of the
text it was redacting may be stored or sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from libs.errors import DomainError

T = TypeVar("T")


class RedactionTimeout(DomainError):
    """Redaction did not finish before its deadline; nothing unredacted may be kept."""

    code = "redaction_timeout"


class Clock:
    """Compares ``time.monotonic()`` with ``deadline`` once every ``every`` ticks (a tick is a
    token or an item of work); ``deadline=None`` never expires."""

    __slots__ = ("_left", "deadline", "every")

    def __init__(self, deadline: float | None, every: int = 256) -> None:
        self.deadline = deadline
        self.every = every
        self._left = every

    def check(self) -> None:
        """Raises now if the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RedactionTimeout("redaction did not finish in time")

    def tick(self, n: int = 1) -> None:
        if self.deadline is None:
            return
        self._left -= n
        if self._left <= 0:
            self._left = self.every
            self.check()


NO_DEADLINE = Clock(None)


async def run_bounded(
    executor: Executor, call: Callable[[], T], timeout: float, failed: type[Exception]
) -> T:
    """`call` (a redaction given the deadline ``time.monotonic() + timeout``) on `executor`,
    off the event loop; `failed` (the caller's fail-closed error) when it does not finish in
    `timeout` seconds or stops on its deadline or its recursion limit. The message names the
    error, never the text that was being redacted."""
    try:
        running = asyncio.get_running_loop().run_in_executor(executor, call)
        return await asyncio.wait_for(running, timeout)
    except TimeoutError as exc:
        raise failed(f"redaction did not finish within {timeout:g} s") from exc
    except (RecursionError, RedactionTimeout) as exc:
        raise failed(f"redaction failed ({type(exc).__name__})") from exc
