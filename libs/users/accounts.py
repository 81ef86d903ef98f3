"""Console users (owner of media_pipeline.console_users).

A user belongs to one API key's tenant and acts as that key, or is an operator user acting as
the operator (the bootstrap key). E-mails are unique case-insensitively (`email_norm`).
Disabling a user or setting a new password ends every session of theirs, in the same
transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from libs import apikeys
from libs.db import DuplicateRow
from libs.errors import Conflict, InvalidInput
from libs.formats import DateTime, Uuid
from libs.users import passwords, sessions
from libs.users.roles import ROLES, Role

MAX_EMAIL = 254

_COLUMNS = """u.id, u.email, u.role, u.api_key_id, u.operator, u.disabled_at, u.created_at,
       coalesce(k.tenant_prefix, '') AS tenant, k.key_hint"""
_FROM = """FROM media_pipeline.console_users u
LEFT JOIN media_pipeline.api_keys k ON k.id = u.api_key_id"""
SELECT_BY_ID = f"SELECT {_COLUMNS} {_FROM} WHERE u.id = $1"
# A tenant admin sees the users of their key ($1), an operator every user ($1 NULL).
LIST_USERS = f"""SELECT {_COLUMNS} {_FROM}
WHERE $1::uuid IS NULL OR u.api_key_id = $1 ORDER BY u.email_norm"""
SELECT_BY_ID_OR_EMAIL = (
    f"SELECT {_COLUMNS} {_FROM} WHERE u.id::text = $1 OR u.email_norm = lower($1)"
)
# `may_log_in`: enabled, and an operator user or one whose key is not revoked.
SELECT_FOR_LOGIN = f"""SELECT {_COLUMNS}, u.password_hash,
       u.disabled_at IS NULL AND (u.operator OR (k.id IS NOT NULL AND k.revoked_at IS NULL))
           AS may_log_in
{_FROM} WHERE u.email_norm = $1"""
INSERT_USER = """
INSERT INTO media_pipeline.console_users
    (id, email, email_norm, password_hash, role, api_key_id, operator, created_at,
     password_changed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
"""
SET_ROLE = "UPDATE media_pipeline.console_users SET role = $2 WHERE id = $1"
# Disabling keeps the first time; enabling clears it.
SET_DISABLED = """
UPDATE media_pipeline.console_users
SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, $3) ELSE NULL END WHERE id = $1
"""
STORE_HASH = """
UPDATE media_pipeline.console_users SET password_hash = $2, password_changed_at = $3
WHERE id = $1
"""
REHASH = "UPDATE media_pipeline.console_users SET password_hash = $2 WHERE id = $1"


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A console user as the API shows it: `tenant` is the key's tenant prefix ('' for an
    operator user), `key_id` the key the user acts as (None for an operator user)."""

    id: Uuid
    email: str
    role: Role
    tenant: str
    operator: bool
    key_id: Uuid | None = None
    key_hint: str | None = None
    created_at: DateTime
    disabled: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        return cls(
            id=str(row["id"]),
            email=row["email"],
            role=row["role"],
            tenant=row["tenant"],
            operator=row["operator"],
            key_id=None if row["api_key_id"] is None else str(row["api_key_id"]),
            key_hint=row["key_hint"],
            disabled=row["disabled_at"] is not None,
            created_at=row["created_at"].isoformat(),
        )


def normalize_email(raw: str) -> tuple[str, str]:
    """(the e-mail as given, trimmed; its lookup form). Raises InvalidInput for anything that
    is not one plausible address: 3-254 printable characters, no space, one '@' with text on
    both sides."""
    email = raw.strip()
    local, at, domain = email.rpartition("@")
    if (
        not 3 <= len(email) <= MAX_EMAIL
        or not at
        or not local
        or not domain
        or "@" in local
        or not email.isprintable()
        or any(ch.isspace() for ch in email)
        or any("\ud800" <= ch <= "\udfff" for ch in email)
    ):
        raise InvalidInput("the e-mail address is not valid", code="invalid_email")
    return email, email.lower()


def check_role(raw: object) -> Role:
    if raw not in ROLES:
        raise InvalidInput(f"role must be one of {list(ROLES)}", code="invalid_role")
    role: Role = raw
    return role


async def create(
    conn: asyncpg.Connection,
    *,
    email: str,
    password: str,
    role: str,
    api_key_id: uuid.UUID | None,
    operator: bool,
    now: datetime,
) -> User:
    """A new user of `api_key_id`'s tenant, or an operator user (exactly one of the two; the
    operator's bootstrap key takes only operator users: InvalidInput `invalid_key`).
    Conflict `email_taken` when the e-mail (in any case) is taken."""
    shown, norm = normalize_email(email)
    checked_role = check_role(role)
    if operator == (api_key_id is not None):
        raise InvalidInput("a user belongs to one key or is an operator user", code="invalid_user")
    if api_key_id is not None:
        key = await apikeys.get(conn, str(api_key_id))
        if key is not None and key.is_bootstrap:
            # A tenant user acting as the operator's key would read and manage every tenant
            # without being an operator user (nor subject to its checks).
            raise InvalidInput(
                "that is the operator's key: make an operator user instead", code="invalid_key"
            )
    digest = await passwords.hash_password(passwords.check_new(password))
    user_id = uuid.uuid4()
    try:
        await conn.execute(
            INSERT_USER, user_id, shown, norm, digest, checked_role, api_key_id, operator, now
        )
    except DuplicateRow:
        raise Conflict("a user with this e-mail exists", code="email_taken") from None
    user = await get(conn, user_id)
    assert user is not None
    return user


async def get(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> User | None:
    row = await conn.fetchrow(SELECT_BY_ID, user_id)
    return User.from_row(row) if row else None


async def find(conn: asyncpg.Connection | asyncpg.Pool, id_or_email: str) -> User | None:
    """The user with this id or e-mail (any case); the operator's commands name users so."""
    row = await conn.fetchrow(SELECT_BY_ID_OR_EMAIL, id_or_email.strip())
    return User.from_row(row) if row else None


async def list_users(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID | None
) -> list[User]:
    """The users of one key (tenant), or every user (None: the operator's view)."""
    return [User.from_row(r) for r in await conn.fetch(LIST_USERS, api_key_id)]


async def for_login(
    conn: asyncpg.Connection | asyncpg.Pool, email_norm: str
) -> tuple[User, str] | None:
    """The user with this lookup e-mail and their password hash, if they may log in: not
    disabled, and acting as a key that is not revoked (or an operator user)."""
    row = await conn.fetchrow(SELECT_FOR_LOGIN, email_norm)
    if row is None or not row["may_log_in"]:
        return None
    return User.from_row(row), row["password_hash"]


async def rehash(conn: asyncpg.Connection | asyncpg.Pool, user_id: str, password: str) -> None:
    """Store the hash again with the current parameters (after a login verified it)."""
    await conn.execute(REHASH, uuid.UUID(user_id), await passwords.hash_password(password))


async def update(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    now: datetime,
) -> None:
    """Change a user's role and/or disable (ending every session) or enable them."""
    checked = None if role is None else check_role(role)
    async with conn.transaction():
        if checked is not None:
            await conn.execute(SET_ROLE, user_id, checked)
        if disabled is not None:
            await conn.execute(SET_DISABLED, user_id, disabled, now)
            if disabled:
                await sessions.end_all(conn, user_id, now=now)


async def set_password(
    conn: asyncpg.Connection, user_id: uuid.UUID, password: str, *, now: datetime
) -> None:
    """A new password; every session of the user ends."""
    digest = await passwords.hash_password(passwords.check_new(password))
    async with conn.transaction():
        await conn.execute(STORE_HASH, user_id, digest, now)
        await sessions.end_all(conn, user_id, now=now)
