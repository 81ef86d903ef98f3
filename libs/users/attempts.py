"""Login attempts (owner of media_pipeline.console_login_attempts): at most `limit` failed
logins per account (its lookup e-mail, whether or not such a user exists) and per client
address within `window`; over either, logins are refused (429) until the oldest failure in the
window is old enough."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import asyncpg

INSERT_ATTEMPT = """
INSERT INTO media_pipeline.console_login_attempts (email_norm, address, succeeded, attempted_at)
VALUES ($1, $2, $3, $4)
"""
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
) -> None:
    await conn.execute(INSERT_ATTEMPT, email_norm[:320], address[:200], succeeded, now)


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
