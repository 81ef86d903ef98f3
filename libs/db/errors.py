from __future__ import annotations

from libs.errors import Unavailable


class DatabaseUnavailable(Unavailable, RuntimeError):
    """Postgres cannot be reached or dropped the connection; callers answer 503 or retry."""

    code = "database_unavailable"
    dependency = "postgres"
    public_detail = "Postgres is unavailable, retry later"


class StatementFailed(Exception):
    """Postgres refused a statement (not an outage): the translated driver error is the
    `__cause__`. Only the refusals callers act on are translated (the subclasses below and
    `check_statement`); any other SQL error stays the driver's, as a bug to fix."""


class MissingTable(StatementFailed):
    """A table the statement names does not exist in this database (e.g. a lookup source)."""


class DuplicateRow(StatementFailed):
    """The row breaks a unique constraint: another writer was first."""
