"""Web console users: accounts (console_users), sessions (console_sessions), login attempts
(console_login_attempts), argon2id passwords and the roles."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from libs.users import attempts, sessions

# Failed logins older than this count for no window (CONSOLE_LOGIN_WINDOW_MINUTES is shorter).
ATTEMPTS_KEPT = timedelta(days=1)


async def purge(pool: asyncpg.Pool, *, now: datetime) -> None:
    """Forget sessions over for a day and login attempts older than a day (the ingest
    sweeper calls this)."""
    await sessions.purge(pool, now=now)
    await attempts.purge(pool, now=now, keep=ATTEMPTS_KEPT)
