"""The database boundary: asyncpg connections and pools whose driver connection errors are
translated, once, into DatabaseUnavailable (like procrastinate's connector), the refusals
callers act on into MissingTable / DuplicateRow, plus the JSON codecs registered on every
connection.

Every query run through a pool from `create_pool` (or a connection from `connect`) raises
DatabaseUnavailable when Postgres is not there, whichever method ran it (`pool.fetch`,
`conn.execute`, a transaction's BEGIN/COMMIT, acquiring a connection). Domain code and services
therefore catch DatabaseUnavailable only, and never the driver's exception classes.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import asyncpg

from libs.db.errors import DatabaseUnavailable, DuplicateRow, MissingTable, StatementFailed

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


# Refusals of a statement that callers act on, as the domain's exceptions.
REFUSALS: dict[type[BaseException], type[StatementFailed]] = {
    asyncpg.exceptions.UndefinedTableError: MissingTable,
    asyncpg.exceptions.UniqueViolationError: DuplicateRow,
}
_REFUSED = tuple(REFUSALS)


def _refused(exc: BaseException) -> StatementFailed:
    return REFUSALS[type(exc)](str(exc))


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    error = DatabaseUnavailable(f"Postgres unavailable: {exc}")
    error.__cause__ = exc
    return error


class _Translated:
    """`with _TRANSLATED:` raises DatabaseUnavailable for connection errors and the domain's
    refusals for those callers act on; one shared instance, so no object is built per call."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, CONNECTION_ERRORS):
            raise _unavailable(exc) from exc
        if isinstance(exc, _REFUSED):
            raise _refused(exc) from exc


_TRANSLATED = _Translated()


class _TranslatingTransaction:
    """asyncpg's Transaction, with connection errors of BEGIN / COMMIT / ROLLBACK translated."""

    __slots__ = ("_tx",)

    def __init__(self, tx: Any) -> None:
        self._tx = tx

    async def __aenter__(self) -> Any:
        try:
            return await self._tx.__aenter__()
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._tx.__aexit__(*exc_info)
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return _translating_attribute(getattr(self._tx, name))


def _translating_attribute(attr: Any) -> Any:
    if not callable(attr):
        return attr

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = attr(*args, **kwargs)
        except CONNECTION_ERRORS as exc:
            # A pool's proxy raises InterfaceError before any coroutine exists once asyncpg
            # noticed its connection died.
            raise _unavailable(exc) from exc
        return _awaiting(result) if inspect.iscoroutine(result) else result

    return call


async def _awaiting(coro: Any) -> Any:
    with _TRANSLATED:
        return await coro


class Connection:
    """An asyncpg connection (or a pool's proxy of one) whose every coroutine method, and every
    transaction, raises DatabaseUnavailable for connection errors. Everything else is passed
    through unchanged, so it is used exactly like asyncpg's connection.

    A wrapper rather than a subclass: a pool's connection proxy raises InterfaceError by itself
    once asyncpg noticed the connection died, without calling into the connection class."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def transaction(self, **kwargs: Any) -> _TranslatingTransaction:
        try:
            return _TranslatingTransaction(self._conn.transaction(**kwargs))
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc

    # The statements every module runs, spelled out: no wrapper built per call.
    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _TRANSLATED:
            return await self._conn.execute(query, *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        with _TRANSLATED:
            return await self._conn.executemany(command, args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _TRANSLATED:
            return await self._conn.fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _TRANSLATED:
            return await self._conn.fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _TRANSLATED:
            return await self._conn.fetchval(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return _translating_attribute(getattr(self._conn, name))


class Pool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool whose connections are translating `Connection`s, and whose acquire
    raises DatabaseUnavailable when no connection can be had."""

    async def _acquire(self, timeout: float | None) -> Any:
        try:
            return Connection(await super()._acquire(timeout))
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        if isinstance(connection, Connection):
            connection = connection._conn
        await super().release(connection, timeout=timeout)


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """A single translating connection (migrations, one-off tools)."""
    try:
        conn = await asyncpg.connect(dsn, **kwargs)
    except CONNECTION_ERRORS as exc:
        raise _unavailable(exc) from exc
    return Connection(conn)


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
    pool = Pool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=None if reset_session else _no_reset_query,
        loop=None,
        command_timeout=30,
        timeout=10,
    )
    try:
        await pool
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    return pool
