"""services/ingest/params.py: one rule per parameter kind, shared by every route."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from libs import params
from libs.errors import DomainError
from services.ingest.errors import answer


def _refused(parse: Callable[..., object], *args: object, **kwargs: object) -> tuple[int, str]:
    """The status and code a parser's refusal is answered with."""
    with pytest.raises(DomainError) as info:
        parse(*args, **kwargs)
    result = answer(info.value)
    return result.status, result.code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # zone-less: UTC
        (" 2026-01-02 ", datetime(2026, 1, 2, tzinfo=UTC)),
        (
            "2026-01-02T03:04:05+01:00",
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_times_are_iso_8601_and_zone_less_means_utc(raw: str, expected: datetime) -> None:
    assert params.parse_time(raw, "since", required=False) == expected


def test_bad_or_missing_times() -> None:
    assert params.parse_time(None, "since", required=False) is None
    assert params.parse_time("", "until", required=False) is None
    assert _refused(params.parse_time, "", "since", required=True) == (
        400,
        "missing_since",
    )
    for raw in ("yesterday", "2026-13-01", "1700000000"):
        assert _refused(params.parse_time, raw, "since", required=False) == (
            400,
            "invalid_since",
        )


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "Yes"])
def test_true_words(raw: str) -> None:
    assert params.parse_bool(raw, "force") is True


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", "NO"])
def test_false_words(raw: str) -> None:
    assert params.parse_bool(raw, "force", default=True) is False


def test_absent_booleans_take_the_default_and_others_are_400() -> None:
    assert params.parse_bool(None, "open") is False
    assert params.parse_bool("", "open", default=True) is True
    for raw in ("maybe", "on", "2", "t"):
        assert _refused(params.parse_bool, raw, "force") == (
            400,
            "invalid_force",
        )


def test_integers_within_bounds() -> None:
    assert params.parse_int(None, "limit", default=100, low=1, high=500) == 100
    assert params.parse_int("7", "limit", default=100, low=1, high=500) == 7
    for raw in ("0", "501", "ten", "1.5"):
        assert _refused(params.parse_int, raw, "limit", default=100, low=1, high=500) == (
            400,
            "invalid_limit",
        )


def test_seconds() -> None:
    assert params.parse_seconds(None, "wait", default=20.0, high=30.0) == 20.0
    assert params.parse_seconds("0.5", "wait", default=20.0, high=30.0) == 0.5
    for raw in ("-1", "31", "nan", "soon"):
        assert _refused(params.parse_seconds, raw, "wait", default=20.0, high=30.0) == (
            400,
            "invalid_wait",
        )


def test_ids_in_queries_are_400_and_in_paths_404() -> None:
    job = uuid.uuid4()
    assert params.parse_uuid(str(job), "audio_file_id", required=True) == job
    assert params.parse_uuid("", "audio_file_id", required=False) is None
    for raw, required in (("x", False), ("", True), (None, True)):
        assert _refused(params.parse_uuid, raw, "audio_file_id", required=required) == (
            400,
            "invalid_audio_file_id",
        )
    assert params.path_uuid(str(job), "job") == job
    assert _refused(params.path_uuid, "nope", "job") == (404, "not_found")
    assert params.path_int_id("42", "delivery") == 42
    for raw in ("abc", "-1", "9" * 19, "²"):
        assert _refused(params.path_int_id, raw, "delivery") == (
            404,
            "not_found",
        )


@pytest.mark.parametrize("raw", ["١٠", "１０", "1_0", "+5", "-0", "٥", "5\u0660", "1e1"])
def test_integers_are_ascii_digits_only(raw: str) -> None:
    assert _refused(params.parse_int, raw, "limit", default=1, low=0, high=500) == (
        400,
        "invalid_limit",
    )


@pytest.mark.parametrize("raw", ["١", "１", "1_0", "+1", "1e0", "nan", "inf", "-0", "1.", "."])
def test_seconds_are_ascii_digits_only(raw: str) -> None:
    if raw == "1.":
        assert params.parse_seconds(raw, "wait", default=2.0, high=60.0) == 1.0
        return
    assert _refused(params.parse_seconds, raw, "wait", default=2.0, high=60.0) == (
        400,
        "invalid_wait",
    )


def test_seconds_with_a_decimal_part() -> None:
    assert params.parse_seconds(" 2.5 ", "wait", default=0.0, high=60.0) == 2.5
    assert params.parse_seconds(".5", "wait", default=0.0, high=60.0) == 0.5


@pytest.mark.parametrize("raw", ["١٠m", "１h", "٢d", "1_0m", "+5m"])
def test_ages_are_ascii_digits_only(raw: str) -> None:
    assert _refused(params.parse_since, raw) == (400, "invalid_since")


def test_ages_too_long_ago_are_400() -> None:
    assert _refused(params.parse_since, "99999999d") == (400, "invalid_since")
    assert _refused(params.parse_since, "9" * 400 + "d") == (400, "invalid_since")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert params.parse_since("90m", now=now) == now - timedelta(minutes=90)


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_times_outside_the_calendar_in_utc(raw: str) -> None:
    assert _refused(params.parse_time, raw, "since", required=False) == (400, "invalid_since")
    assert _refused(params.parse_since, raw) == (400, "invalid_since")
