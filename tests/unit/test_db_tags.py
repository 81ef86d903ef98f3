"""The one reader of asyncpg command tags."""

from __future__ import annotations

import pytest

from libs.db import rows_affected


@pytest.mark.parametrize(
    ("tag", "count"),
    [("UPDATE 0", 0), ("UPDATE 1", 1), ("DELETE 5000", 5000), ("INSERT 0 1", 1), ("UPDATE 11", 11)],
)
def test_rows_affected(tag: str, count: int) -> None:
    assert rows_affected(tag) == count


@pytest.mark.parametrize("tag", ["", "BEGIN", "SELECT", "UPDATE ١"])
def test_a_tag_without_a_count_is_an_error(tag: str) -> None:
    with pytest.raises(ValueError, match="command tag"):
        rows_affected(tag)
