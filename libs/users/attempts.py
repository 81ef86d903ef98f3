"""Login attempts (owner of media_pipeline.console_login_attempts): at most `limit` failed
logins per account (its lookup e-mail, whether or not such a user exists) and per client
address within `window`; over either, logins are refused (429) until the oldest failure in the
window is old enough.

An attempt is counted BEFORE its password is checked (`reserve`: a failure until `succeeded`
says otherwise), under a transaction-scoped advisory lock per account and per address: guesses
sent all at once are counted like guesses sent one by one, so no more than `limit` of them get
as far as the password check. An attempt interrupted half-way stays a failure (fail closed)."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

import asyncpg

INSERT_ATTEMPT = """
INSERT INTO media_pipeline.console_login_attempts (email_norm, address, succeeded, attempted_at)
VALUES ($1, $2, $3, $4) RETURNING id
"""
LOCK = "SELECT pg_advisory_xact_lock($1)"
MARK_SUCCEEDED = "UPDATE media_pipeline.console_login_attempts SET succeeded = true WHERE id = $1"
# The failures within the window: how many, and the oldest ($3 = window start).
FAILURES = """
SELECT (SELECT count(*) FROM media_pipeline.console_login_attempts
        WHERE email_norm = $1 AND NOT succeeded AND attempted_at > $3) AS by_account,
       (SELECT min(attempted_at) FROM (
            SELECT attempted_at FROM media_pipeline.console_login_attempts
            WHERE email_norm = $1 AND NOT succeeded AND attempted_at > $3
            ORDER BY attempted_at DESC LIMIT $4) a) AS account_oldest,
       (SELECT count(*) FROM media_pipeline.console_login_attempts
        WHERE address = $2 AND NOT succeeded AND attempted_at > $3) AS by_address,
       (SELECT min(attempted_at) FROM (
            SELECT attempted_at FROM media_pipeline.console_login_attempts
            WHERE address = $2 AND NOT succeeded AND attempted_at > $3
            ORDER BY attempted_at DESC LIMIT $4) b) AS address_oldest
"""
PURGE = "DELETE FROM media_pipeline.console_login_attempts WHERE attempted_at < $1"


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    email_norm: str,
    address: str,
    *,
    succeeded: bool,
    now: datetime,
) -> int:
    attempt_id: int = await conn.fetchval(
        INSERT_ATTEMPT, email_norm[:320], address[:200], succeeded, now
    )
    return attempt_id


def _lock_id(kind: str, value: str) -> int:
    """A signed 64-bit advisory lock id for one account or address."""
    digest = hashlib.sha256(f"console-login {kind} {value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def reserve(
    pool: asyncpg.Pool,
    email_norm: str,
    address: str,
    *,
    now: datetime,
    limit: int,
    window: timedelta,
) -> tuple[int | None, int | None]:
    """(the attempt's id, None) when a login may be tried now: the attempt is recorded as a
    failure, to be marked `succeeded` once the password is right; or (None, seconds to wait)
    when the account or the address is over the limit (nothing recorded)."""
    locks = sorted({_lock_id("account", email_norm[:320]), _lock_id("address", address[:200])})
    async with pool.acquire() as conn, conn.transaction():
        for lock in locks:  # always in the same order: two logins never wait for each other
            await conn.execute(LOCK, lock)
        wait = await retry_after(conn, email_norm, address, now=now, limit=limit, window=window)
        if wait is not None:
            return None, wait
        return await record(conn, email_norm, address, succeeded=False, now=now), None


async def succeeded(conn: asyncpg.Connection | asyncpg.Pool, attempt_id: int) -> None:
    """The reserved attempt had the right password: it is no failure."""
    await conn.execute(MARK_SUCCEEDED, attempt_id)


async def retry_after(
    conn: asyncpg.Connection | asyncpg.Pool,
    email_norm: str,
    address: str,
    *,
    now: datetime,
    limit: int,
    window: timedelta,
) -> int | None:
    """Seconds until a login may be tried again, or None when it may be tried now."""
    start = now - window
    row = await conn.fetchrow(FAILURES, email_norm[:320], address[:200], start, limit)
    waits = [
        (oldest + window - now).total_seconds()
        for count, oldest in (
            (row["by_account"], row["account_oldest"]),
            (row["by_address"], row["address_oldest"]),
        )
        if count >= limit and oldest is not None
    ]
    if not waits:
        return None
    return max(1, math.ceil(float(max(waits))))


async def purge(conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, keep: timedelta) -> None:
    await conn.execute(PURGE, now - keep)
