"""The database boundary: whichever way a query reaches a dead connection or an absent server,
the caller sees DatabaseUnavailable (a domain error), never the driver's exception classes."""

from __future__ import annotations

import socket
from typing import Any

import asyncpg
import pytest

from libs import db
from libs.db import DatabaseUnavailable
from libs.errors import Unavailable

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _kill_backend(dsn: str, pid: int) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def _use(conn: Any, how: str) -> None:
    if how == "transaction":
        async with conn.transaction():
            await conn.execute("SELECT 1")
    else:
        await getattr(conn, how)("SELECT 1")


async def test_no_server_is_database_unavailable_for_pools_and_connections() -> None:
    dsn = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nothing"
    with pytest.raises(DatabaseUnavailable) as caught:
        await db.create_pool(dsn)
    assert isinstance(caught.value, Unavailable)
    assert caught.value.code == "database_unavailable"
    with pytest.raises(DatabaseUnavailable):
        await db.connect(dsn)


@pytest.mark.parametrize("how", ["fetchval", "execute", "fetch", "fetchrow", "transaction"])
async def test_a_killed_connection_is_database_unavailable(postgres_server: Any, how: str) -> None:
    pool = await db.create_pool(postgres_server.dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await _kill_backend(postgres_server.dsn, await conn.fetchval("SELECT pg_backend_pid()"))
            with pytest.raises(DatabaseUnavailable):
                await _use(conn, how)
        # The pool replaces the dead connection: the next query works again.
        assert await pool.fetchval("SELECT 2") == 2
    finally:
        await pool.close()


async def test_sql_errors_are_not_outages(postgres_server: Any) -> None:
    """A refusal callers act on is translated to the domain's exception (the driver's as its
    cause); any other SQL error stays the driver's. Neither is an outage."""
    pool = await db.create_pool(postgres_server.dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(db.MissingTable) as missing:
            await pool.fetchval("SELECT * FROM no_such_table")
        assert isinstance(missing.value.__cause__, asyncpg.exceptions.UndefinedTableError)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE uniq (id int PRIMARY KEY)")
            await conn.execute("INSERT INTO uniq VALUES (1)")
            with pytest.raises(db.DuplicateRow):
                await conn.execute("INSERT INTO uniq VALUES (1)")
            with pytest.raises(db.DuplicateRow):
                await conn.fetchval("INSERT INTO uniq VALUES (1) RETURNING id")
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            await pool.fetchval("SELECT 1 / 0")
    finally:
        await pool.close()


async def test_check_statement(postgres_server: Any) -> None:
    pool = await db.create_pool(postgres_server.dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            shape = await db.check_statement(conn, "SELECT 1 AS a, $1::text AS b")
            assert shape == db.StatementShape(parameters=1, columns=("a", "b"))
            with pytest.raises(db.StatementFailed):
                await db.check_statement(conn, "SELEC nonsense")
            with pytest.raises(db.MissingTable):
                await db.check_statement(conn, "SELECT * FROM no_such_table WHERE x = $1")
    finally:
        await pool.close()
