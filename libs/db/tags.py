"""asyncpg command tags (`UPDATE 3`, `DELETE 0`, `INSERT 0 1`): the one reader of them."""

from __future__ import annotations


def rows_affected(tag: str) -> int:
    """How many rows a statement touched, from its command tag (the tag's last number)."""
    count = tag.rsplit(" ", 1)[-1]
    if not count.isascii() or not count.isdigit():
        raise ValueError(f"not a command tag with a row count: {tag!r}")
    return int(count)
