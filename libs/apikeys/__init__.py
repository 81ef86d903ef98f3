"""API keys: stored as sha256 hashes, each bound to a tenant prefix and optional webhook.

Every key has a `whsec_` webhook signing secret from its creation on (generated unless given),
so every webhook it causes (its default endpoint, per-job `callback_url`s, test events) is
signed; the column is NOT NULL (migration 0007)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.layout import InvalidPrefix, validate_prefix
from libs.transcript.conversation import parse_roles

KEY_PREFIX = "tgw_"
BOOTSTRAP_NAME = "bootstrap"

SELECT_ACTIVE_BY_HASH = """
SELECT id, name, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
       webhook_secret_previous, webhook_disabled_at, rate_limit_per_minute, created_at, revoked_at, key_hint,
       audio_ttl_seconds, transcript_ttl_seconds,
       channel_roles, redact
FROM media_pipeline.api_keys WHERE key_hash = $1 AND revoked_at IS NULL
"""
SELECT_BY_ID = """
SELECT id, name, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
       webhook_secret_previous, webhook_disabled_at, rate_limit_per_minute, created_at, revoked_at, key_hint,
       audio_ttl_seconds, transcript_ttl_seconds,
       channel_roles, redact
FROM media_pipeline.api_keys WHERE id = $1
"""
LIST_KEYS = """
SELECT id, name, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
       webhook_secret_previous, webhook_disabled_at, rate_limit_per_minute, created_at, revoked_at, key_hint,
       audio_ttl_seconds, transcript_ttl_seconds,
       channel_roles, redact
FROM media_pipeline.api_keys ORDER BY created_at
"""
# The operator's key (API_KEY): what operator console users act as.
SELECT_ACTIVE_BOOTSTRAP = """
SELECT id, name, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
       webhook_secret_previous, webhook_disabled_at, rate_limit_per_minute, created_at, revoked_at, key_hint,
       audio_ttl_seconds, transcript_ttl_seconds,
       channel_roles, redact
FROM media_pipeline.api_keys WHERE is_bootstrap AND revoked_at IS NULL
ORDER BY created_at DESC LIMIT 1
"""
# An active key by its id or its hint (the operator's commands name keys either way).
SELECT_ACTIVE_BY_ID_OR_HINT = """
SELECT id, name, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
       webhook_secret_previous, webhook_disabled_at, rate_limit_per_minute, created_at, revoked_at, key_hint,
       audio_ttl_seconds, transcript_ttl_seconds,
       channel_roles, redact
FROM media_pipeline.api_keys WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL
"""
INSERT_KEY = """
INSERT INTO media_pipeline.api_keys
    (id, name, key_hash, key_hint, tenant_prefix, is_bootstrap, webhook_url, webhook_secret,
     rate_limit_per_minute, audio_ttl_seconds, transcript_ttl_seconds, channel_roles,
     redact)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""
# NULL keeps forever. Applies to jobs submitted afterwards (their expiry is set at submit).
SET_RETENTION = """
UPDATE media_pipeline.api_keys SET audio_ttl_seconds = $2, transcript_ttl_seconds = $3
WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL
RETURNING id
"""
# A key's channel -> role map (NULL: the default agent, customer).
SET_CHANNEL_ROLES = """
UPDATE media_pipeline.api_keys SET channel_roles = $2
WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL RETURNING id
"""
# The tenant's default redaction policy (a Policy.spec; '' for none), by key id or hint.
SET_REDACT = """
UPDATE media_pipeline.api_keys SET redact = $2
WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL RETURNING id
"""
UPSERT_BOOTSTRAP = """
INSERT INTO media_pipeline.api_keys
    (id, name, key_hash, key_hint, tenant_prefix, is_bootstrap, webhook_url, webhook_secret)
VALUES ($1, 'bootstrap', $2, $3, $4, true, $5, coalesce($6, $7))
ON CONFLICT (key_hash) DO UPDATE SET
    tenant_prefix = EXCLUDED.tenant_prefix, is_bootstrap = true, revoked_at = NULL,
    webhook_url = EXCLUDED.webhook_url,
    -- A new WEBHOOK_URL is a new endpoint: whatever disabled the old one does not carry over.
    webhook_disabled_at = CASE WHEN media_pipeline.api_keys.webhook_url IS DISTINCT FROM EXCLUDED.webhook_url
        THEN NULL ELSE media_pipeline.api_keys.webhook_disabled_at END,
    webhook_disabled_reason = CASE WHEN media_pipeline.api_keys.webhook_url IS DISTINCT FROM EXCLUDED.webhook_url
        THEN NULL ELSE media_pipeline.api_keys.webhook_disabled_reason END,
    webhook_failing_since = CASE WHEN media_pipeline.api_keys.webhook_url IS DISTINCT FROM EXCLUDED.webhook_url
        THEN NULL ELSE media_pipeline.api_keys.webhook_failing_since END,
    webhook_consecutive_failures = CASE WHEN media_pipeline.api_keys.webhook_url IS DISTINCT FROM EXCLUDED.webhook_url
        THEN 0 ELSE media_pipeline.api_keys.webhook_consecutive_failures END,
    webhook_secret_previous = CASE
        WHEN $6::text IS NOT NULL AND media_pipeline.api_keys.webhook_secret IS DISTINCT FROM $6
        THEN media_pipeline.api_keys.webhook_secret
        ELSE media_pipeline.api_keys.webhook_secret_previous END,
    -- Without WEBHOOK_SECRET the secret generated at the first start is kept.
    webhook_secret = coalesce($6, media_pipeline.api_keys.webhook_secret, $7)
RETURNING id
"""
SELECT_BOOTSTRAP_SIGNING = """
SELECT webhook_secret FROM media_pipeline.api_keys
WHERE key_hash = $1 AND is_bootstrap AND revoked_at IS NULL
"""
# A changed API_KEY retires the previous bootstrap key instead of leaving it valid for ever.
RETIRE_OLD_BOOTSTRAP = """
UPDATE media_pipeline.api_keys SET revoked_at = now()
WHERE is_bootstrap AND key_hash <> $1 AND revoked_at IS NULL
"""
REVOKE_KEY = """
UPDATE media_pipeline.api_keys SET revoked_at = now()
WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL RETURNING id
"""


class InvalidKeySettings(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    tenant_prefix: str
    is_bootstrap: bool
    webhook_url: str | None
    webhook_secret: str
    webhook_secret_previous: str | None
    webhook_disabled_at: datetime | None
    rate_limit_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None
    key_hint: str
    # Retention of the key's jobs (seconds; None keeps forever): the audio object, and the
    # whole job (transcripts included). A job may ask for shorter ones, never longer.
    audio_ttl_seconds: int | None = None
    transcript_ttl_seconds: int | None = None
    # The role of channel k for this key's (tenant's) jobs; None: agent, customer.
    channel_roles: tuple[str, ...] | None = None
    # The tenant's default redaction policy (libs.redaction.Policy.spec; '' for none).
    redact: str = ""

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            tenant_prefix=row["tenant_prefix"],
            is_bootstrap=row["is_bootstrap"],
            webhook_url=row["webhook_url"],
            webhook_secret=row["webhook_secret"],
            webhook_secret_previous=row["webhook_secret_previous"],
            webhook_disabled_at=row["webhook_disabled_at"],
            rate_limit_per_minute=row["rate_limit_per_minute"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
            key_hint=row["key_hint"],
            audio_ttl_seconds=row["audio_ttl_seconds"],
            transcript_ttl_seconds=row["transcript_ttl_seconds"],
            channel_roles=None if row["channel_roles"] is None else tuple(row["channel_roles"]),
            redact=row["redact"],
        )

    @property
    def signing_secrets(self) -> list[str]:
        return [s for s in (self.webhook_secret, self.webhook_secret_previous) if s]


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def hint(raw: str) -> str:
    return raw[:8]


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def generate_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# No key is longer; a longer value is not looked up at all.
MAX_KEY_CHARS = 256


def plausible(raw: str) -> bool:
    """Could `raw` be a key? Printable text within MAX_KEY_CHARS: never a NUL, a control
    character or a byte that was not UTF-8 (a lone surrogate from aiohttp's decoding)."""
    return (
        0 < len(raw) <= MAX_KEY_CHARS
        and raw.isprintable()
        and not any("\ud800" <= ch <= "\udfff" for ch in raw)
    )


async def authenticate(conn: asyncpg.Connection | asyncpg.Pool, raw: str) -> ApiKey | None:
    """The active key `raw` names, or None; never raises on a strange value (it is None)."""
    if not plausible(raw):
        return None
    row = await conn.fetchrow(SELECT_ACTIVE_BY_HASH, hash_key(raw))
    return ApiKey.from_row(row) if row else None


async def get(conn: asyncpg.Connection | asyncpg.Pool, key_id: str) -> ApiKey | None:
    row = await conn.fetchrow(SELECT_BY_ID, uuid.UUID(key_id))
    return ApiKey.from_row(row) if row else None


async def active(conn: asyncpg.Connection | asyncpg.Pool, key_id: uuid.UUID) -> ApiKey | None:
    """The key with this id if it is not revoked (a console user acts as it)."""
    row = await conn.fetchrow(SELECT_BY_ID, key_id)
    return ApiKey.from_row(row) if row and row["revoked_at"] is None else None


async def find(conn: asyncpg.Connection | asyncpg.Pool, key_id_or_hint: str) -> ApiKey | None:
    """The one active key with this id or hint (None when none, or when a hint is ambiguous)."""
    if not plausible(key_id_or_hint):
        return None
    rows = await conn.fetch(SELECT_ACTIVE_BY_ID_OR_HINT, key_id_or_hint)
    return ApiKey.from_row(rows[0]) if len(rows) == 1 else None


async def operator(conn: asyncpg.Connection | asyncpg.Pool) -> ApiKey | None:
    """The active bootstrap key (API_KEY): the operator, whom operator console users act as."""
    row = await conn.fetchrow(SELECT_ACTIVE_BOOTSTRAP)
    return ApiKey.from_row(row) if row else None


async def ensure_bootstrap(
    conn: asyncpg.Connection,
    raw: str,
    *,
    tenant_prefix: str,
    webhook_url: str | None,
    webhook_secret: str | None,
) -> str:
    """Register `API_KEY` from the environment (hashed) so it works like any other key.

    Its signing secret is `webhook_secret` (WEBHOOK_SECRET) when given; otherwise the one it
    already has, or one generated now and kept (`bootstrap_secret` shows it)."""
    digest = hash_key(raw)
    async with conn.transaction():
        key_id = await conn.fetchval(
            UPSERT_BOOTSTRAP,
            uuid.uuid4(),
            digest,
            hint(raw),
            tenant_prefix,
            webhook_url,
            webhook_secret,
            generate_webhook_secret(),
        )
        await conn.execute(RETIRE_OLD_BOOTSTRAP, digest)
    return str(key_id)


async def bootstrap_secret(conn: asyncpg.Connection | asyncpg.Pool, raw: str) -> str | None:
    """The signing secret of the bootstrap key `raw` (generated when WEBHOOK_SECRET is unset)."""
    secret: str | None = await conn.fetchval(SELECT_BOOTSTRAP_SIGNING, hash_key(raw))
    return secret


def _checked_scope(tenant_prefix: str, *, unscoped: bool) -> str:
    """The key's tenant prefix, normalised; exactly one of a prefix or `unscoped` is given."""
    try:
        tenant_prefix = validate_prefix(tenant_prefix)
    except InvalidPrefix as exc:
        raise InvalidKeySettings(f"tenant prefix: {exc}") from exc
    if not tenant_prefix and not unscoped:
        raise InvalidKeySettings(
            "a key needs a tenant prefix (--prefix); an operator key that may write under any "
            "prefix must be asked for explicitly (--unscoped)"
        )
    if tenant_prefix and unscoped:
        raise InvalidKeySettings("a key is either scoped to a prefix or --unscoped, not both")
    return tenant_prefix


def _check_webhook(webhook_url: str | None, webhook_secret: str | None) -> None:
    """A given webhook secret has the whsec_ form and a given URL the http(s) scheme."""
    if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
        raise InvalidKeySettings("webhook secrets have the form whsec_<base64>")
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise InvalidKeySettings("the webhook URL must be http(s)")


async def create(
    conn: asyncpg.Connection,
    *,
    name: str,
    tenant_prefix: str = "",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    rate_limit_per_minute: int | None = None,
    unscoped: bool = False,
    audio_ttl_seconds: int | None = None,
    transcript_ttl_seconds: int | None = None,
    channel_roles: str | None = None,
    redact: str = "",
) -> tuple[str, ApiKey]:
    """Create a key; returns the raw key (shown once, never stored) and its record.

    Every key gets a signing secret: `webhook_secret` or, without one, a generated one (read it
    from the returned record; show it once). Tenants are isolated by default: a key needs a
    tenant prefix, and writes only under it. `unscoped=True` (the operator's explicit choice,
    `transcribe keys create --unscoped`) creates a key without one, which, like the bootstrap
    key, may use any `b2_prefix`.

    Raises InvalidKeySettings for a missing prefix (without `unscoped`), a prefix given together
    with `unscoped`, a prefix that is not a safe object-key prefix (no '..', no leading '/',
    safe characters), a non-positive rate limit or a malformed webhook secret. `redact` is a
    policy the caller validated (libs.redaction.Policy.spec). The caller checks
    the webhook URL against its SSRF policy (libs.webhooks.admin.checked_url); here only its
    scheme is checked."""
    tenant_prefix = _checked_scope(tenant_prefix, unscoped=unscoped)
    if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
        raise InvalidKeySettings("the rate limit must be a positive number of requests a minute")
    _check_ttls(audio_ttl_seconds, transcript_ttl_seconds)
    _check_webhook(webhook_url, webhook_secret)
    roles = _roles(channel_roles)
    if webhook_secret is None:
        webhook_secret = generate_webhook_secret()
    raw = generate_key()
    key_id = uuid.uuid4()
    await conn.execute(
        INSERT_KEY,
        key_id,
        name,
        hash_key(raw),
        hint(raw),
        tenant_prefix,
        False,
        webhook_url,
        webhook_secret,
        rate_limit_per_minute,
        audio_ttl_seconds,
        transcript_ttl_seconds,
        None if roles is None else list(roles),
        redact,
    )
    record = await get(conn, str(key_id))
    assert record is not None
    return raw, record


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    return [ApiKey.from_row(r) for r in await conn.fetch(LIST_KEYS)]


def _roles(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return parse_roles(value)
    except ValueError as exc:
        raise InvalidKeySettings(str(exc)) from exc


async def set_channel_roles(
    conn: asyncpg.Connection, key_id_or_hint: str, channel_roles: str | None
) -> bool:
    """Set (None: clear) the channel -> role map of an active key; False if there is none."""
    roles = _roles(channel_roles)
    updated = await conn.fetchval(
        SET_CHANNEL_ROLES, key_id_or_hint, None if roles is None else list(roles)
    )
    return updated is not None


async def set_redact(conn: asyncpg.Connection, key_id_or_hint: str, redact: str) -> bool:
    """Set an active key's default redaction policy (a validated Policy.spec; '' for none).
    Jobs submitted from then on get it; jobs already submitted keep the policy they have."""
    return await conn.fetchval(SET_REDACT, key_id_or_hint, redact) is not None


async def revoke(conn: asyncpg.Connection, key_id_or_hint: str) -> bool:
    return await conn.fetchval(REVOKE_KEY, key_id_or_hint) is not None


def _check_ttls(*ttls: int | None) -> None:
    if any(ttl is not None and ttl <= 0 for ttl in ttls):
        raise InvalidKeySettings("a retention TTL must be a positive duration")


async def set_retention(
    conn: asyncpg.Connection,
    key_id_or_hint: str,
    *,
    audio_ttl_seconds: int | None,
    transcript_ttl_seconds: int | None,
) -> bool:
    """Set (None: clear, keep forever) the key's TTLs; they apply to jobs submitted afterwards.
    False when there is no such active key."""
    _check_ttls(audio_ttl_seconds, transcript_ttl_seconds)
    found = await conn.fetchval(
        SET_RETENTION, key_id_or_hint, audio_ttl_seconds, transcript_ttl_seconds
    )
    return found is not None
