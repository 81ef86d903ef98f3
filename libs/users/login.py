"""Logging in: rate limit, verify, open a session.

Every refusal of the credentials is the same `invalid_credentials` (unknown e-mail, wrong
password, disabled user, a user whose key was revoked), after the same argon2 verification,
so neither the answer nor its time tells which."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from libs.errors import InvalidInput, RateLimited, Unauthenticated
from libs.users import accounts, attempts, passwords, sessions
from libs.users.accounts import User


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    session_lifetime: timedelta
    attempts: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class LoggedIn:
    user: User
    token: str


def _attempt_key(email: str) -> str:
    """What the failed logins of a string that is no e-mail address count under: its lookup
    form, with what Postgres text cannot hold (NUL) or UTF-8 cannot spell (a lone surrogate)
    replaced, so the attempt is looked up and recorded like any other."""
    folded = email.strip().lower()[: accounts.MAX_EMAIL]
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in folded)


def _refused() -> Unauthenticated:
    return Unauthenticated("the e-mail or the password is wrong", code="invalid_credentials")


async def login(
    pool: asyncpg.Pool,
    email: str,
    password: str,
    *,
    address: str,
    now: datetime,
    policy: LoginPolicy,
) -> LoggedIn:
    """A new session for the user, or Unauthenticated (`invalid_credentials`) / RateLimited."""
    try:
        _, norm = accounts.normalize_email(email)
    except InvalidInput:
        norm = _attempt_key(email)
    attempt, wait = await attempts.reserve(
        pool, norm, address, now=now, limit=policy.attempts, window=policy.window
    )
    if attempt is None:
        raise RateLimited("too many failed logins; try again later", retry_after=wait or 1)
    found = await accounts.for_login(pool, norm)
    if found is None or len(password) > passwords.MAX_CHARS:
        ok = await passwords.verify_nobody(password[: passwords.MAX_CHARS])
    else:
        ok = await passwords.verify(found[1], password)
    if not ok or found is None:
        raise _refused()  # the reserved attempt stays a failure
    user, stored = found
    if passwords.needs_rehash(stored):
        await accounts.rehash(pool, user.id, password)
    token = await sessions.open_session(
        pool, user.id, now=now, lifetime=policy.session_lifetime, address=address
    )
    await attempts.succeeded(pool, attempt)
    return LoggedIn(user=user, token=token)
