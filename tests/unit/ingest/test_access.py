"""The role table (services/ingest/access.py) and the Range parser (byteranges.py): pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest import access, byteranges
from services.ingest.byteranges import ByteRange

DOC = Path(__file__).parents[3] / "docs" / "console-api.md"


@pytest.mark.parametrize(
    ("method", "route", "level"),
    [
        ("GET", "/api/media/jobs", "viewer"),
        ("HEAD", "/api/media/{audio_file_id}/audio", "viewer"),
        ("DELETE", "/api/media/{audio_file_id}", "supervisor"),
        ("PUT", "/api/media/{audio_file_id}/speakers", "supervisor"),
        ("GET", "/api/categories", "viewer"),
        ("PUT", "/api/categories/{name}", "supervisor"),
        ("POST", "/api/categories/{name}/apply", "supervisor"),
        ("GET", "/api/insights/template", "viewer"),
        ("PUT", "/api/insights/template/{campaign}", "admin"),
        ("GET", "/api/media/insights/{audio_file_id}", "viewer"),
        ("GET", "/api/notifications/rules", "admin"),
        ("GET", "/api/webhooks/endpoint", "admin"),
        ("PATCH", "/api/users/{user_id}", "admin"),
        ("POST", "/api/ops/dead-letters/{dead_letter_id}/requeue", "operator"),
        # Not in the table: admin.
        ("GET", "/api/something/new", "admin"),
        ("POST", "/api/media/search", "admin"),
    ],
)
def test_each_route_has_its_level(method: str, route: str, level: str) -> None:
    assert access.required(method, route) == level


def test_the_documented_table_is_the_table() -> None:
    text = DOC.read_text()
    for method, route, level in access.ROUTE_LEVELS:
        assert f"| `{method}` | `{route}` | {level} |" in text


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, ByteRange(0, 9)),
        ("bytes=90-", 100, ByteRange(90, 99)),
        ("bytes=-10", 100, ByteRange(90, 99)),
        ("bytes=-1000", 100, ByteRange(0, 99)),
        ("bytes=50-5000", 100, ByteRange(50, 99)),
        ("BYTES = 1-2", 100, ByteRange(1, 2)),
        ("bytes=0-1,5-6", 100, None),
        ("bytes=9-3", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=+1-2", 100, None),
        ("bytes=\u0661-2", 100, None),
        ("bytes=" + "9" * 30 + "-", 100, None),
        ("items=0-1", 100, None),
        ("bytes", 100, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert byteranges.parse(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(byteranges.Unsatisfiable):
        byteranges.parse(header, size)
