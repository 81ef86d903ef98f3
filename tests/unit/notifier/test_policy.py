"""Retry schedule, jitter, Retry-After and what each answer means for a delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.notifier.policy import DEFAULT_POLICY, RETRY_SCHEDULE, DeliveryPolicy
from services.notifier.worker import judge, retry_after_seconds


def test_default_schedule_is_the_documented_one() -> None:
    # immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    assert RETRY_SCHEDULE == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert DEFAULT_POLICY.max_attempts == 8


def test_delays_are_jittered_within_bounds_and_not_all_equal() -> None:
    delays = [DEFAULT_POLICY.next_delay(5, None) for _ in range(200)]
    assert all(d is not None and 16200.0 <= d <= 19800.0 for d in delays)
    assert len(set(delays)) > 100


def test_schedule_exhausted_means_give_up() -> None:
    p = DeliveryPolicy(schedule=(1.0, 2.0), jitter=0.0)
    assert p.next_delay(1, None) == 1.0
    assert p.next_delay(2, None) == 2.0
    assert p.next_delay(3, None) is None


def test_retry_after_can_only_push_later_and_is_capped() -> None:
    p = DeliveryPolicy(schedule=(10.0, 10.0), jitter=0.0, max_retry_after=100.0)
    assert p.next_delay(1, 60.0) == 60.0
    assert p.next_delay(1, 1.0) == 10.0
    assert p.next_delay(1, 10_000.0) == 100.0


@pytest.mark.parametrize(
    ("status", "permanent", "verdict"),
    [
        (200, False, "succeeded"),
        (204, False, "succeeded"),
        (299, False, "succeeded"),
        (301, False, "retry"),
        (302, False, "retry"),
        (400, False, "retry"),
        (410, False, "gone"),
        (500, False, "retry"),
        (None, False, "retry"),
        (None, True, "failed"),
    ],
)
def test_only_2xx_counts(status: int | None, permanent: bool, verdict: str) -> None:
    outcome = judge(
        status, steps_done=1, retry_after=None, permanent=permanent, policy=DEFAULT_POLICY
    )
    assert outcome.verdict == verdict


def test_retry_after_only_from_429_and_503() -> None:
    p = DeliveryPolicy(schedule=(1.0,), jitter=0.0)
    for status in (429, 503):
        assert judge(status, steps_done=1, retry_after=30.0, permanent=False, policy=p).delay == 30
    assert judge(500, steps_done=1, retry_after=30.0, permanent=False, policy=p).delay == 1.0


def test_last_failed_attempt_gives_up() -> None:
    p = DeliveryPolicy(schedule=(1.0,), jitter=0.0)
    assert judge(500, steps_done=2, retry_after=None, permanent=False, policy=p).verdict == "failed"


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
