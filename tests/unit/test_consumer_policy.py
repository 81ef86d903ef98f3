"""The single ack / nak / term policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from libs.bus import Delivery, Outcome, Pause, Reject, Retry, decide
from libs.bus.consumer import BACKOFF, backoff


def _delivery(n: int = 1, max_deliver: int = 10) -> Delivery:
    msg: Any = object()
    return Delivery(
        msg=msg, subject="s", data=b"", num_delivered=n, max_deliver=max_deliver, stream_seq=1
    )


def test_success_acks() -> None:
    assert decide(None, _delivery()) == (Outcome.ACK, None)


def test_reject_terms() -> None:
    assert decide(Reject("bad"), _delivery()) == (Outcome.TERM, None)


def test_retry_with_server_delay_naks_with_that_delay() -> None:
    assert decide(Retry("429", delay=7.5), _delivery()) == (Outcome.NAK, 7.5)


def test_pause_naks_for_the_pause() -> None:
    assert decide(Pause("401", seconds=60), _delivery()) == (Outcome.NAK, 60)


def test_shutdown_hands_work_back_immediately() -> None:
    assert decide(asyncio.CancelledError(), _delivery()) == (Outcome.NAK, 0.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 50])
def test_unexpected_errors_nak_with_growing_backoff(n: int) -> None:
    outcome, delay = decide(RuntimeError("boom"), _delivery(n))
    assert outcome is Outcome.NAK
    expected = BACKOFF[min(n, len(BACKOFF)) - 1]
    assert delay is not None and 0.8 * expected <= delay <= 1.2 * expected


def test_backoff_grows() -> None:
    assert tuple(sorted(BACKOFF)) == BACKOFF
    assert backoff(1) < backoff(4) * 2


def test_last_attempt_is_known() -> None:
    assert _delivery(10, 10).last_attempt
    assert not _delivery(9, 10).last_attempt
