"""Console passwords: argon2id (argon2-cffi's RFC 9106 low-memory profile: t=3, m=64 MiB,
p=4), stored in the PHC string format. Hashing and verifying take tens of milliseconds of CPU,
so both run in a worker thread (`asyncio.to_thread`), never on the event loop.

An unknown e-mail or a disabled user costs the same verification as a wrong password
(`verify_nobody` checks against a dummy hash), so the answer time tells nothing."""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from libs.errors import InvalidInput

HASHER = PasswordHasher()  # argon2id, argon2-cffi's RFC 9106 defaults
MIN_CHARS = 10
MAX_CHARS = 1024


def check_new(password: str) -> str:
    """A password a user may be given: 10-1024 characters, no control characters, UTF-8."""
    if not MIN_CHARS <= len(password) <= MAX_CHARS:
        raise InvalidInput(
            f"a password has {MIN_CHARS} to {MAX_CHARS} characters", code="invalid_password"
        )
    if not password.isprintable() or any("\ud800" <= ch <= "\udfff" for ch in password):
        raise InvalidInput("a password may not contain control characters", code="invalid_password")
    return password


def generate() -> str:
    """A password for a user created without one (shown once): 20 URL-safe characters."""
    return secrets.token_urlsafe(15)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify(stored: str, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored, password)


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


async def verify_nobody(password: str) -> bool:
    """Spend a verification's time on no account (unknown e-mail, disabled user); False."""
    stored = await asyncio.to_thread(_dummy_hash)
    await verify(stored, password)
    return False


def needs_rehash(stored: str) -> bool:
    return HASHER.check_needs_rehash(stored)
