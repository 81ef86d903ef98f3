from __future__ import annotations


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached or dropped the connection; callers answer 503 or retry."""
