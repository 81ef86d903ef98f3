"""The webhook endpoint of an API key (the `webhook_*` columns of `media_pipeline.api_keys`):
its URL and signing secrets, their rotation, and its health (failure streak, disabled state).
Every write of those columns is here; `libs.apikeys` owns the rest of the row."""

from __future__ import annotations

import uuid

import asyncpg

ENDPOINT = """
SELECT id, key_hint, webhook_url, webhook_secret IS NOT NULL AS signed,
       webhook_secret_previous IS NOT NULL AS rotating, webhook_disabled_at,
       webhook_disabled_reason, webhook_failing_since, webhook_consecutive_failures,
       webhook_progress
FROM media_pipeline.api_keys WHERE id = $1
"""
# Opt-in: `transcription.progress` webhooks for the key's running jobs (its URL and callbacks).
SET_PROGRESS = """
UPDATE media_pipeline.api_keys SET webhook_progress = $2 WHERE id = $1 RETURNING id
"""
ENABLE = """
UPDATE media_pipeline.api_keys
SET webhook_disabled_at = NULL, webhook_disabled_reason = NULL,
    webhook_failing_since = NULL, webhook_consecutive_failures = 0
WHERE id = $1 AND webhook_url IS NOT NULL
RETURNING id
"""
# Rotation: the new secret signs alongside the old one until the owner finishes the rotation,
# so receivers can switch at their own pace (Standard Webhooks: several signatures).
ROTATE = """
UPDATE media_pipeline.api_keys
SET webhook_secret_previous = webhook_secret, webhook_secret = $2
WHERE id = $1 AND NOT is_bootstrap
RETURNING id
"""
FINISH_ROTATION = """
UPDATE media_pipeline.api_keys SET webhook_secret_previous = NULL
WHERE id = $1 AND NOT is_bootstrap
RETURNING id
"""
# A new URL is a new endpoint: whatever disabled the old one does not apply to it.
SET_URL = """
UPDATE media_pipeline.api_keys
SET webhook_url = $2,
    webhook_disabled_at = NULL, webhook_disabled_reason = NULL,
    webhook_failing_since = NULL, webhook_consecutive_failures = 0
WHERE id = $1 AND NOT is_bootstrap
RETURNING id
"""
FIND_KEY = """
SELECT id FROM media_pipeline.api_keys
WHERE (id::text = $1 OR key_hint = $1) AND revoked_at IS NULL
"""
SUCCEEDED = """
UPDATE media_pipeline.api_keys
SET webhook_failing_since = NULL, webhook_consecutive_failures = 0
WHERE id = $1 AND webhook_url = $2
  AND (webhook_failing_since IS NOT NULL OR webhook_consecutive_failures <> 0)
"""
# Returns whether the streak now meets the auto-disable rule (both limits passed).
FAILED = """
UPDATE media_pipeline.api_keys
SET webhook_failing_since = coalesce(webhook_failing_since, now()),
    webhook_consecutive_failures = webhook_consecutive_failures + 1
WHERE id = $1 AND webhook_url = $2 AND webhook_disabled_at IS NULL
RETURNING webhook_failing_since <= now() - make_interval(secs => $3)
      AND webhook_consecutive_failures >= $4
"""
DISABLE = """
UPDATE media_pipeline.api_keys SET webhook_disabled_at = now(), webhook_disabled_reason = $3
WHERE id = $1 AND webhook_url = $2 AND webhook_disabled_at IS NULL
"""


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(ENDPOINT, api_key_id)
    return row


async def set_progress(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, enabled: bool
) -> bool:
    return await conn.fetchval(SET_PROGRESS, api_key_id, enabled) is not None


async def enable(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> bool:
    """Re-enable the endpoint, the failure streak restarting; False if the key has no URL."""
    return await conn.fetchval(ENABLE, api_key_id) is not None


async def find_key(conn: asyncpg.Connection | asyncpg.Pool, id_or_hint: str) -> list[uuid.UUID]:
    """Active keys whose id or hint is `id_or_hint`."""
    return [row["id"] for row in await conn.fetch(FIND_KEY, id_or_hint)]


async def rotate(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, secret: str
) -> bool:
    """Start a rotation to `secret`; False for the bootstrap key (its secret is configured)."""
    return await conn.fetchval(ROTATE, api_key_id, secret) is not None


async def finish_rotation(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> bool:
    return await conn.fetchval(FINISH_ROTATION, api_key_id) is not None


async def set_url(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, url: str) -> bool:
    """Point the endpoint at `url` (enabled, streak reset); False for the bootstrap key (its
    endpoint is configured)."""
    return await conn.fetchval(SET_URL, api_key_id, url) is not None


async def succeeded(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, url: str
) -> None:
    await conn.execute(SUCCEEDED, api_key_id, url)


async def failed(
    conn: asyncpg.Connection | asyncpg.Pool,
    api_key_id: uuid.UUID,
    url: str,
    *,
    disable_after_seconds: float,
    disable_min_failures: int,
) -> bool:
    """Count a failure; True when the streak now meets the auto-disable rule."""
    return bool(
        await conn.fetchval(FAILED, api_key_id, url, disable_after_seconds, disable_min_failures)
    )


async def disable(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, url: str, reason: str
) -> None:
    await conn.execute(DISABLE, api_key_id, url, reason)
