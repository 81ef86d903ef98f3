"""The redact step: a job's transcript redacted off the event loop, in bounded time, failing
closed.

Redaction is CPU work on text an engine (or a caller's audio) chose, so it runs in a thread
of its own: the event loop, which in `transcribe up` also serves the API, keeps serving. It gets
`timeout` seconds (REDACTION_TIMEOUT_SECONDS); if it raises or runs out of time the step
raises `RedactionFailed`, before anything has been written, and the job fails permanently
(the same transcript would fail the same way on every retry, each paying for the
transcription again). A thread cannot be stopped from outside: past the timeout nothing waits
for it or uses what it returns, and a redaction given a deadline of its own stops there.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from libs.redaction import (
    Policy,
    RedactionReport,
    redact_chunk,
    redact_transcript,
)
from libs.redaction.deadline import run_bounded
from libs.transcript import Transcript, with_asked_timings
from services.transcriber.failures import RedactionFailed

T = TypeVar("T")

# Threads of their own: a redaction never waits behind audio decoding on the default executor
# (which would eat into its time) nor holds the threads file and decoding work need. Its time
# counts from submission, so it includes waiting for one of these.
_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="redaction")


class Redactor(Protocol):
    def __call__(
        self,
        transcript: Transcript,
        policy: Policy,
        *,
        timed_segments: bool = True,
        deadline: float | None = None,
    ) -> tuple[Transcript, RedactionReport]: ...


@dataclass(frozen=True, slots=True)
class Redacted:
    """What the store step writes: the transcript that may leave this process, the evidence
    (None without a policy) and, only when the policy keeps both, the unredacted original."""

    transcript: Transcript
    report: RedactionReport | None = None
    original: Transcript | None = None


async def redact(
    transcript: Transcript,
    policy: Policy,
    *,
    timed_segments: bool,
    timestamps: str,
    timeout: float,
    redactor: Redactor = redact_transcript,
) -> Redacted:
    """`transcript` as the job's policy wants it stored and sent (unchanged without one).
    `timed_segments`: whether the engine's segment times are when things were said. Word
    timings are kept only with `timestamps == "word"`, policy or not."""
    if not policy.active:
        return Redacted(with_asked_timings(transcript, timestamps))
    call = functools.partial(
        redactor, transcript, policy, timed_segments=timed_segments, deadline=_deadline(timeout)
    )
    redacted, report = await _bounded(call, timeout)
    # Words (top level and in utterances) only when asked: audio redaction asks the engine for
    # them, for the report's spans, whatever the job keeps.
    original = with_asked_timings(transcript, timestamps) if policy.keep == "both" else None
    return Redacted(with_asked_timings(redacted, timestamps), report, original)


async def redact_saved_chunk(
    transcript: Transcript, policy: Policy, *, timeout: float
) -> Transcript:
    """A chunk's transcript as it may be saved in Postgres for resuming (`redact_chunk`)."""
    call = functools.partial(redact_chunk, transcript, policy, deadline=_deadline(timeout))
    return await _bounded(call, timeout)


def _deadline(timeout: float) -> float:
    """The detectors' own bound (libs.redaction.deadline): a thread past its time stops by
    itself instead of running on after `_bounded` has given up on it."""
    return time.monotonic() + timeout


async def _bounded(call: Callable[[], T], timeout: float) -> T:
    return await run_bounded(_THREADS, call, timeout, RedactionFailed)
