from __future__ import annotations

import pytest

from services.ingest.lookup import Recording, escape_like
from services.ingest.phone import to_e164


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("%", "\\%"),
        ("_", "\\_"),
        ("a%b_c", "a\\%b\\_c"),
        ("back\\slash", "back\\\\slash"),
        ("rec-1", "rec-1"),
    ],
)
def test_like_metacharacters_are_escaped(raw: str, escaped: str) -> None:
    assert escape_like(raw) == escaped


def _rec(rid: str) -> Recording:
    return Recording(
        recording_id=rid,
        url="u",
        phone=None,
        campaign_name=None,
        campaign_id=None,
        started=None,
        stopped=None,
    )


def test_source_row_id_only_for_numeric_ids() -> None:
    assert _rec("1001").source_row_id == 1001
    assert _rec("rec-7f3a").source_row_id is None
    assert _rec("99999999999999999999").source_row_id is None
    # ASCII digits only: int() would read these as 10.
    assert _rec("١٠").source_row_id is None
    assert _rec("１０").source_row_id is None


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 20 7946 0018", "US", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("(415) 555-0132", "US", "+14155550132"),
        ("not a phone", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_phone_numbers_become_e164(raw: str | None, region: str, expected: str | None) -> None:
    assert to_e164(raw, region) == expected
