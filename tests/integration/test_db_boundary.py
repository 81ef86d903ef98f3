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
    """A bug in our SQL stays the driver's error: only connection loss is an outage."""
    pool = await db.create_pool(postgres_server.dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            await pool.fetchval("SELECT * FROM no_such_table")
    finally:
        await pool.close()
