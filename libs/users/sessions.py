"""Console sessions (owner of media_pipeline.console_sessions).

The cookie holds a random 32-byte token; the table holds only its sha256, so a copy of the
database opens no session. Every login makes a new session (a token set before the login is
never promoted: no session fixation). A session is valid until logout (`ended_at`),
`idle` without use or its absolute `expires_at`, whichever comes first; every use moves
`last_seen_at`. Times come from the caller (`now`), so expiry is tested without waiting.

The CSRF token of a session is an HMAC of its token: the server recomputes it from the
cookie, nobody without the cookie can, and nothing more is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from libs.users.roles import Role

TOKEN_BYTES = 32
# A cookie value longer than this is no token of ours (43 characters for 32 bytes).
MAX_TOKEN_CHARS = 64
_CSRF_CONTEXT = b"transcription-gateway console csrf v1"

INSERT_SESSION = """
INSERT INTO media_pipeline.console_sessions
    (id, token_hash, user_id, created_at, last_seen_at, expires_at, address)
VALUES ($1, $2, $3, $4, $4, $5, $6)
"""
# The live session of this token, touched; its user must be enabled. $2 now, $3 idle seconds.
TOUCH_SESSION = """
UPDATE media_pipeline.console_sessions s SET last_seen_at = $2
FROM media_pipeline.console_users u
WHERE s.token_hash = $1 AND s.user_id = u.id
  AND s.ended_at IS NULL AND s.expires_at > $2
  AND s.last_seen_at > $2 - make_interval(secs => $3)
  AND u.disabled_at IS NULL
RETURNING s.id, s.user_id, s.expires_at, u.email, u.role, u.api_key_id, u.operator
"""
END_SESSION = """
UPDATE media_pipeline.console_sessions SET ended_at = $2
WHERE token_hash = $1 AND ended_at IS NULL RETURNING id
"""
END_ALL = """
UPDATE media_pipeline.console_sessions SET ended_at = $2
WHERE user_id = $1 AND ended_at IS NULL
"""
# Sessions over for a day are of no use to anyone.
PURGE = """
DELETE FROM media_pipeline.console_sessions
WHERE coalesce(ended_at, expires_at) < $1::timestamptz - interval '1 day'
"""


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and the user it belongs to."""

    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    role: Role
    api_key_id: uuid.UUID | None
    operator: bool
    expires_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Session:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            email=row["email"],
            role=row["role"],
            api_key_id=row["api_key_id"],
            operator=row["operator"],
            expires_at=row["expires_at"],
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()


def plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_CHARS and token.isascii() and token.isprintable()


def csrf_token(token: str) -> str:
    """The session's CSRF token (the same for the session's whole life)."""
    mac = hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_matches(token: str, sent: str) -> bool:
    """Constant-time comparison of a sent X-CSRF-Token with the session's."""
    return hmac.compare_digest(csrf_token(token).encode(), sent.encode("utf-8", "replace"))


async def open_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: str,
    *,
    now: datetime,
    lifetime: timedelta,
    address: str,
) -> str:
    """A new session of the user; returns its token (for the cookie, never stored)."""
    token = new_token()
    await conn.execute(
        INSERT_SESSION,
        uuid.uuid4(),
        hash_token(token),
        uuid.UUID(user_id),
        now,
        now + lifetime,
        address[:200],
    )
    return token


async def resolve(
    conn: asyncpg.Connection | asyncpg.Pool, token: str, *, now: datetime, idle: timedelta
) -> Session | None:
    """The live session of `token` (its last use moved to `now`), or None: unknown, ended,
    idle too long, past its absolute expiry, or its user disabled."""
    if not plausible(token):
        return None
    row = await conn.fetchrow(TOUCH_SESSION, hash_token(token), now, idle.total_seconds())
    return Session.from_row(row) if row else None


async def end(conn: asyncpg.Connection | asyncpg.Pool, token: str, *, now: datetime) -> bool:
    """Logout: the session of `token` ends; False when there was none live."""
    if not plausible(token):
        return False
    return await conn.fetchval(END_SESSION, hash_token(token), now) is not None


async def end_all(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, *, now: datetime
) -> None:
    await conn.execute(END_ALL, user_id, now)


async def purge(conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime) -> None:
    await conn.execute(PURGE, now)
