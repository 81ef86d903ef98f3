"""The notifier's durable retry queue (`webhook_deliveries`) and its attempt log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

JOB_FOR_EVENT = """
SELECT a.id, a.api_key_id, a.campaign_name, a.phone, a.callback_url, a.b2_object_key,
       t.text,
       k.webhook_url AS key_webhook_url, k.webhook_disabled_at, k.webhook_secret,
       k.webhook_secret_previous
FROM media_pipeline.audio_files a
JOIN media_pipeline.api_keys k ON k.id = a.api_key_id
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.id = $1
"""
# A second copy of the same event (a replay or redelivery) re-sends with the same webhook-id.
SCHEDULE = """
INSERT INTO media_pipeline.webhook_deliveries
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id, endpoint_url) DO UPDATE SET
    status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE media_pipeline.webhook_deliveries.status <> 'pending'
"""
# Claiming pushes next_attempt_at out by a lease: a notifier that dies mid-POST gives the row
# back when the lease ends, and no two notifiers POST the same row at once.
CLAIM_DUE = """
UPDATE media_pipeline.webhook_deliveries d
SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
WHERE d.id IN (
    SELECT id FROM media_pipeline.webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.event_id, d.event_type, d.endpoint_url, d.payload, d.attempts, d.api_key_id,
          d.audio_file_id, d.created_at
"""
NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM media_pipeline.webhook_deliveries
WHERE status = 'pending'
"""
KEY_SECRETS = """
SELECT webhook_url, webhook_secret, webhook_secret_previous, webhook_disabled_at
FROM media_pipeline.api_keys WHERE id = $1
"""
RECORD_ATTEMPT = """
INSERT INTO media_pipeline.webhook_attempts (delivery_id, attempt, status_code, latency_ms, error)
VALUES ($1, $2, $3, $4, left($5, 500))
"""
FINISH = """
UPDATE media_pipeline.webhook_deliveries
SET status = $2, attempts = attempts + 1, last_status_code = $3, last_error = left($4, 500),
    last_latency_ms = $5, updated_at = now()
WHERE id = $1
"""
RESCHEDULE = """
UPDATE media_pipeline.webhook_deliveries
SET attempts = attempts + 1, last_status_code = $2, last_error = left($3, 500),
    last_latency_ms = $4, next_attempt_at = now() + make_interval(secs => $5), updated_at = now()
WHERE id = $1
"""
DISABLE_KEY_WEBHOOK = """
UPDATE media_pipeline.api_keys SET webhook_disabled_at = now(), webhook_disabled_reason = $3
WHERE id = $1 AND webhook_url = $2 AND webhook_disabled_at IS NULL
"""
CANCEL_PENDING_FOR_ENDPOINT = """
UPDATE media_pipeline.webhook_deliveries SET status = 'cancelled', updated_at = now(),
    last_error = 'endpoint disabled'
WHERE api_key_id = $1 AND endpoint_url = $2 AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    event_id: str
    event_type: str
    endpoint_url: str
    payload: bytes
    attempts: int
    api_key_id: uuid.UUID | None
    audio_file_id: uuid.UUID
    created_at: datetime


async def claim_due(pool: asyncpg.Pool, limit: int, lease_seconds: float) -> list[Due]:
    rows = await pool.fetch(CLAIM_DUE, limit, lease_seconds)
    return [
        Due(
            id=r["id"],
            event_id=str(r["event_id"]),
            event_type=r["event_type"],
            endpoint_url=r["endpoint_url"],
            payload=bytes(r["payload"]),
            attempts=r["attempts"],
            api_key_id=r["api_key_id"],
            audio_file_id=r["audio_file_id"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
