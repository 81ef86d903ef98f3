"""The parameter kinds the job lifecycle added (libs/params): durations, list cursors; and the
client's progress line."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from libs import params
from libs.contracts import JobProgress, TranscriptionDeleted, any_event_decoder, encode, utcnow
from libs.errors import InvalidInput
from services.cli.client import Bar


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("36h", 129600), ("7d", 604800), ("3600", 3600), (" 1d ", 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert params.parse_duration(text, "ttl") == seconds


@pytest.mark.parametrize(
    "text", ["0", "0d", "-1d", "1.5d", "1w", "d", "7 d", "1e3", "７d", "7d\n1", "9" * 13, "36501d"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        params.parse_duration(text, "ttl")
    assert err.value.code == "invalid_ttl"


def test_absent_duration_is_none() -> None:
    assert params.parse_duration(None, "ttl") is None
    assert params.parse_duration("  ", "ttl") is None


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    job = uuid.uuid4()
    for when in (
        datetime(2026, 12, 1, 4, 5, 6, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
    ):
        assert params.parse_cursor(params.encode_cursor(when, job)) == (when, job)
    assert params.parse_cursor(None) is None and params.parse_cursor("") is None
    naive = params.encode_cursor(datetime(2026, 1, 1), job)  # a time without a zone
    for bad in ("x", "!!!", "bm90IGEgY3Vyc29y", naive, "A" * 300, "wqk="):
        with pytest.raises(InvalidInput) as err:
            params.parse_cursor(bad)
        assert err.value.code == "invalid_cursor"


def test_new_events_decode_and_old_consumers_ignore_unknown_fields() -> None:
    deleted = TranscriptionDeleted(
        event_id="e1", occurred_at=utcnow(), audio_file_id="a", tenant="t", deleted_by="retention"
    )
    progress = JobProgress(
        event_id="e2", occurred_at=utcnow(), audio_file_id="a", tenant="t", stage="transcribing"
    )
    assert any_event_decoder.decode(encode(deleted)) == deleted
    assert any_event_decoder.decode(encode(progress)) == progress
    newer = encode(progress).replace(b'"stage"', b'"new_field":1,"stage"')
    assert any_event_decoder.decode(newer) == progress


def test_progress_line_on_a_pipe_prints_once_per_stage() -> None:
    out = io.StringIO()
    bar = Bar(out)
    bar.show("uploading", 0.5)
    bar.show("uploading", 1.0)
    bar.show("queued")
    bar.show("transcribing", 0.25, "12s")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[###############...............]  50.0% uploading")
    assert lines[2].endswith("transcribing 12s")
    quiet = io.StringIO()
    Bar(quiet, enabled=False).show("uploading", 0.5)
    assert quiet.getvalue() == ""
