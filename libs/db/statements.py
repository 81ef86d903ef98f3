"""Checking a statement written outside the code (an operator's lookup query) before use."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from libs.db.errors import StatementFailed


@dataclass(frozen=True, slots=True)
class StatementShape:
    """What a prepared statement takes and returns."""

    parameters: int
    columns: tuple[str, ...]


async def check_statement(conn: asyncpg.Connection, sql: str) -> StatementShape:
    """Prepare `sql` (nothing runs); StatementFailed when Postgres refuses it."""
    try:
        stmt = await conn.prepare(sql)
    except asyncpg.PostgresError as exc:
        raise StatementFailed(str(exc)) from exc
    return StatementShape(
        parameters=len(stmt.get_parameters()),
        columns=tuple(a.name for a in stmt.get_attributes()),
    )
