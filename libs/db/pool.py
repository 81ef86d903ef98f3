"""The asyncpg pool: JSON codecs registered once, driver connection errors translated here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from libs.db.errors import DatabaseUnavailable

# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # What asyncpg raises when a connection dies in the middle of an operation
    # ("cannot switch to state ...; another operation is in progress").
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)
# Everything that means "Postgres is not there", translated or not.
UNAVAILABLE: tuple[type[BaseException], ...] = (DatabaseUnavailable, *CONNECTION_ERRORS)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset_query(conn: asyncpg.Connection) -> None:
    """asyncpg still rolls back an open transaction and drops listeners before calling this."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, reset_session: bool = False
) -> asyncpg.Pool:
    """A pool whose connections skip asyncpg's reset query (RESET ALL, UNLISTEN *, ...) on
    release: a round trip per pooled query, and three per transcription. Nothing here changes
    session state on a pooled connection (migrations take their own), and asyncpg still rolls
    back an open transaction and drops listeners on release. `reset_session=True` restores it.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=None if reset_session else _no_reset_query,
            command_timeout=30,
            timeout=10,
        )
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction; connection loss surfaces as DatabaseUnavailable."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc


async def fetchrow(pool: asyncpg.Pool, query: str, *args: Any) -> asyncpg.Record | None:
    try:
        return await pool.fetchrow(query, *args)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc


async def fetch(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    try:
        return list(await pool.fetch(query, *args))
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc


async def execute(pool: asyncpg.Pool, query: str, *args: Any) -> str:
    try:
        return str(await pool.execute(query, *args))
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc
