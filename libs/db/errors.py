from __future__ import annotations

from libs.errors import Unavailable


class DatabaseUnavailable(Unavailable, RuntimeError):
    """Postgres cannot be reached or dropped the connection; callers answer 503 or retry."""

    code = "database_unavailable"
    dependency = "postgres"
    public_detail = "Postgres is unavailable, retry later"
