"""The notifier's durable retry queue (`webhook_deliveries`), its attempt log, and the health of
each key's default endpoint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from libs.apikeys import endpoints
from libs.db import rows_affected

JOB_FOR_EVENT = """
SELECT a.id, a.api_key_id, a.campaign_name, a.phone, a.callback_url, a.b2_object_key,
       a.recording_id, a.status, t.text,
       k.webhook_url AS key_webhook_url, k.webhook_disabled_at, k.webhook_progress
FROM media_pipeline.audio_files a
JOIN media_pipeline.api_keys k ON k.id = a.api_key_id
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.id = $1
"""
# A second copy of the same event (a replay or redelivery) re-sends with the same webhook-id:
# a finished row is re-armed for a new round, its attempt history kept. A row whose attempt is
# in flight (leased, lease live) is marked `rearm`: FINISH starts the new round when that
# attempt ends, so the replay is not overwritten by the old round's result. A row waiting for
# a retry is left alone: its next attempt carries the replay.
SCHEDULE = """
INSERT INTO media_pipeline.webhook_deliveries AS d
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id, endpoint_url) DO UPDATE SET
    status = 'pending',
    schedule_step = CASE WHEN d.status <> 'pending' THEN 0 ELSE d.schedule_step END,
    next_attempt_at = CASE WHEN d.status <> 'pending' THEN now() ELSE d.next_attempt_at END,
    rearm = (d.status = 'pending'),
    updated_at = now()
WHERE d.status <> 'pending' OR (d.leased_at IS NOT NULL AND d.next_attempt_at > now())
"""
# The key's endpoint is disabled: keep a cancelled row, so its owner can recover the event
# after re-enabling the endpoint.
SCHEDULE_SUPPRESSED = """
INSERT INTO media_pipeline.webhook_deliveries
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload, status, last_error)
VALUES ($1, $2, $3, $4, $5, $6, 'cancelled', 'endpoint disabled')
ON CONFLICT (event_id, endpoint_url) DO NOTHING
"""
# Claiming pushes next_attempt_at out by a lease: a notifier that dies mid-POST gives the row
# back when the lease ends, and no two notifiers POST the same row at once. Endpoints that
# already have their share of attempts in flight ($3) wait, so one slow receiver cannot take
# every slot. The signing secrets are read at attempt time, so a rotation applies to queued
# retries too. A claimed attempt carries any replay noted (`rearm`) during an earlier attempt
# whose lease was handed back or ran out: it is not one more round.
CLAIM_DUE = """
WITH due AS (
    SELECT id FROM media_pipeline.webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
      AND NOT (endpoint_url = ANY($3::text[]))
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE media_pipeline.webhook_deliveries d
    SET next_attempt_at = now() + make_interval(secs => $2), leased_at = now(),
        rearm = false, updated_at = now()
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.event_type, d.endpoint_url, d.payload, d.attempts,
              d.schedule_step, d.api_key_id, d.audio_file_id, d.channel, d.rule_id)
SELECT c.*, k.webhook_url AS key_webhook_url, k.webhook_secret, k.webhook_secret_previous
FROM claimed c LEFT JOIN media_pipeline.api_keys k ON k.id = c.api_key_id
"""
# A notifier shutting down mid-POST hands its rows straight back instead of after the lease.
RELEASE_LEASES = """
UPDATE media_pipeline.webhook_deliveries SET next_attempt_at = now(), leased_at = NULL
WHERE id = ANY($1::bigint[]) AND status = 'pending'
"""
NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM media_pipeline.webhook_deliveries
WHERE status = 'pending' AND NOT (endpoint_url = ANY($1::text[]))
"""
RECORD_ATTEMPT = """
INSERT INTO media_pipeline.webhook_attempts (delivery_id, attempt, status_code, latency_ms, error)
VALUES ($1, $2, $3, $4, left($5, 500))
"""
# The attempt's end. A replay that came while it was in flight (`rearm`) starts a new round
# when this one succeeded or failed for good; a cancelled one (410, endpoint disabled) stays,
# and so does a row cancelled meanwhile (its job deleted and its body scrubbed, its rule off).
FINISH = """
UPDATE media_pipeline.webhook_deliveries
SET status = CASE WHEN rearm AND status = 'pending' AND $2 IN ('succeeded', 'failed')
                  THEN 'pending' ELSE $2 END,
    schedule_step = CASE WHEN rearm AND status = 'pending' AND $2 IN ('succeeded', 'failed')
                         THEN 0 ELSE schedule_step + 1 END,
    next_attempt_at = CASE WHEN rearm AND status = 'pending' AND $2 IN ('succeeded', 'failed')
                           THEN now() ELSE next_attempt_at END,
    attempts = attempts + 1, leased_at = NULL, rearm = false,
    last_status_code = $3, last_error = left($4, 500), last_latency_ms = $5, updated_at = now()
WHERE id = $1
"""
# A retry is scheduled: that retry carries any replay that came meanwhile.
RESCHEDULE = """
UPDATE media_pipeline.webhook_deliveries
SET attempts = attempts + 1, schedule_step = schedule_step + 1, last_status_code = $2,
    last_error = left($3, 500), last_latency_ms = $4, leased_at = NULL, rearm = false,
    next_attempt_at = now() + make_interval(secs => $5), updated_at = now()
WHERE id = $1
"""
# Finished deliveries (and their attempts, by cascade) are kept for `days` for the delivery log
# and "recover since", then deleted in bounded batches.
PURGE_FINISHED = """
DELETE FROM media_pipeline.webhook_deliveries WHERE id IN (
    SELECT id FROM media_pipeline.webhook_deliveries
    WHERE status <> 'pending' AND updated_at < now() - make_interval(days => $1)
    LIMIT $2)
"""
CANCEL_PENDING_FOR_ENDPOINT = """
UPDATE media_pipeline.webhook_deliveries SET status = 'cancelled', updated_at = now(),
    last_error = 'endpoint disabled', rearm = false
WHERE api_key_id = $1 AND endpoint_url = $2 AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class EventJob:
    """A job as the notifier needs it to announce an event (JOB_FOR_EVENT): its facts, its
    transcript text, and its key's default endpoint."""

    id: uuid.UUID
    api_key_id: uuid.UUID
    campaign_name: str | None
    phone: str | None
    callback_url: str | None
    b2_object_key: str | None
    recording_id: str | None
    status: str
    text: str | None
    key_webhook_url: str | None
    webhook_disabled_at: datetime | None
    webhook_progress: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EventJob:
        return cls(
            id=row["id"],
            api_key_id=row["api_key_id"],
            campaign_name=row["campaign_name"],
            phone=row["phone"],
            callback_url=row["callback_url"],
            b2_object_key=row["b2_object_key"],
            recording_id=row["recording_id"],
            status=row["status"],
            text=row["text"],
            key_webhook_url=row["key_webhook_url"],
            webhook_disabled_at=row["webhook_disabled_at"],
            webhook_progress=bool(row["webhook_progress"]),
        )


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One row to schedule: `live` False keeps it as a cancelled row (disabled endpoint)."""

    event_id: uuid.UUID
    event_type: str
    audio_file_id: uuid.UUID
    api_key_id: uuid.UUID
    endpoint_url: str
    payload: bytes
    live: bool = True

    def args(self) -> tuple[object, ...]:
        return (
            self.event_id,
            self.event_type,
            self.audio_file_id,
            self.api_key_id,
            self.endpoint_url,
            self.payload,
        )


async def job_for_event(pool: asyncpg.Pool, job_id: uuid.UUID) -> EventJob | None:
    row = await pool.fetchrow(JOB_FOR_EVENT, job_id)
    return None if row is None else EventJob.from_row(row)


async def schedule(pool: asyncpg.Pool, deliveries: list[NewDelivery]) -> None:
    """Write the rows (idempotent per event and endpoint), all or none."""
    if len(deliveries) == 1:
        # One statement commits on its own: no BEGIN/COMMIT round trips on the hot path.
        d = deliveries[0]
        await pool.execute(SCHEDULE if d.live else SCHEDULE_SUPPRESSED, *d.args())
        return
    async with pool.acquire() as conn, conn.transaction():
        for d in deliveries:
            await conn.execute(SCHEDULE if d.live else SCHEDULE_SUPPRESSED, *d.args())


async def purge_finished(pool: asyncpg.Pool, days: float, batch: int) -> int:
    """Delete up to `batch` finished deliveries older than `days`; returns how many."""
    return rows_affected(await pool.execute(PURGE_FINISHED, days, batch))


async def release_leases(pool: asyncpg.Pool, ids: list[int]) -> None:
    """Hand claimed rows straight back (still due) instead of after their lease."""
    await pool.execute(RELEASE_LEASES, ids)


async def next_due_in(pool: asyncpg.Pool, busy: list[str]) -> float | None:
    """Seconds until the next pending row of an endpoint not in `busy` is due (negative when
    overdue); None when there is none."""
    wait = await pool.fetchval(NEXT_DUE, busy)
    return None if wait is None else float(wait)


async def record_attempt(
    conn: asyncpg.Connection,
    delivery_id: int,
    attempt: int,
    status: int | None,
    latency_ms: int,
    error: str | None,
) -> None:
    await conn.execute(RECORD_ATTEMPT, delivery_id, attempt, status, latency_ms, error)


async def finish(
    conn: asyncpg.Connection,
    delivery_id: int,
    status: str,
    *,
    status_code: int | None,
    error: str | None,
    latency_ms: int,
) -> None:
    """The delivery is over: `succeeded`, `failed` or `cancelled`."""
    await conn.execute(FINISH, delivery_id, status, status_code, error, latency_ms)


async def reschedule(
    conn: asyncpg.Connection,
    delivery_id: int,
    *,
    status_code: int | None,
    error: str,
    latency_ms: int,
    delay: float,
) -> None:
    await conn.execute(RESCHEDULE, delivery_id, status_code, error, latency_ms, delay)


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    event_id: str
    event_type: str
    endpoint_url: str
    payload: bytes
    attempts: int
    schedule_step: int
    api_key_id: uuid.UUID | None
    audio_file_id: uuid.UUID | None
    # The key's default endpoint (health is tracked, and 410 disables, only for that one).
    key_webhook_url: str | None
    secrets: tuple[str, ...]
    # 'webhook' (signed POST), or a notification rule's message: 'slack' / 'email'.
    channel: str = "webhook"
    rule_id: uuid.UUID | None = None

    @property
    def is_key_endpoint(self) -> bool:
        return self.api_key_id is not None and self.endpoint_url == self.key_webhook_url

    @property
    def trace_id(self) -> str | None:
        """The request's trace id, carried in the body, so delivery logs join the job's trail."""
        try:
            return _trace_decoder.decode(self.payload).data.trace_id
        except msgspec.DecodeError:
            return None


class _TraceData(msgspec.Struct):
    trace_id: str | None = None


class _TraceEnvelope(msgspec.Struct):
    data: _TraceData = msgspec.field(default_factory=_TraceData)


_trace_decoder = msgspec.json.Decoder(_TraceEnvelope)


async def claim_due(
    pool: asyncpg.Pool, limit: int, lease_seconds: float, busy: list[str] | None = None
) -> list[Due]:
    rows = await pool.fetch(CLAIM_DUE, limit, lease_seconds, busy or [])
    return [
        Due(
            id=r["id"],
            event_id=str(r["event_id"]),
            event_type=r["event_type"],
            endpoint_url=r["endpoint_url"],
            payload=bytes(r["payload"]),
            attempts=r["attempts"],
            schedule_step=r["schedule_step"],
            api_key_id=r["api_key_id"],
            audio_file_id=r["audio_file_id"],
            key_webhook_url=r["key_webhook_url"],
            # The current secret first; the previous one only during a rotation.
            secrets=tuple(s for s in (r["webhook_secret"], r["webhook_secret_previous"]) if s),
            channel=r["channel"],
            rule_id=r["rule_id"],
        )
        for r in rows
    ]


async def disable_endpoint(
    conn: asyncpg.Connection, api_key_id: uuid.UUID, url: str, reason: str
) -> None:
    """Disable a key's default endpoint and cancel what is queued for it (recoverable later)."""
    async with conn.transaction():
        await endpoints.disable(conn, api_key_id, url, reason)
        await conn.execute(CANCEL_PENDING_FOR_ENDPOINT, api_key_id, url)


# A deleted job (libs/jobs/deletion.py): its deliveries keep their log but lose their bodies
# (transcript text, phone), and those still pending are cancelled, so no result of the job is
# announced after its deletion. Runs in the deletion's transaction.
SCRUB_FOR_DELETED_JOB = """
UPDATE media_pipeline.webhook_deliveries
SET payload = convert_to(json_build_object(
        'type', event_type, 'data', json_build_object(
            'audio_file_id', audio_file_id, 'deleted', true))::text, 'UTF8'),
    status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    last_error = CASE WHEN status = 'pending' THEN 'job deleted' ELSE last_error END,
    updated_at = now()
WHERE audio_file_id = $1
"""


async def scrub_for_deleted_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    await conn.execute(SCRUB_FOR_DELETED_JOB, job_id)


# ---- Notification messages (libs/notifications): Slack and e-mail rows of the same queue ----

# The endpoint is `<channel>:<rule id>`: the Slack URL (a secret) and the addresses stay in the
# rule and are read at send time; the per-endpoint limit applies per rule.
SCHEDULE_NOTICE = """
INSERT INTO media_pipeline.webhook_deliveries
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload, channel, rule_id)
VALUES ($1, $2, $3, $4, $5::text || ':' || $6::uuid::text, $7, $5::text, $6::uuid)
RETURNING id
"""
CANCEL_PENDING_FOR_RULE = """
UPDATE media_pipeline.webhook_deliveries SET status = 'cancelled', updated_at = now(),
    last_error = left($2, 500)
WHERE rule_id = $1 AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class NewNotice:
    """One notification message to send: a Slack payload or an e-mail's parts."""

    event_id: uuid.UUID
    event_type: str
    audio_file_id: uuid.UUID | None
    api_key_id: uuid.UUID
    rule_id: uuid.UUID
    channel: str  # 'slack' | 'email'
    payload: bytes


async def schedule_notice(conn: asyncpg.Connection, notice: NewNotice) -> int:
    """Queue the message (in the caller's transaction); returns the delivery id."""
    delivery_id: int = await conn.fetchval(
        SCHEDULE_NOTICE,
        notice.event_id,
        notice.event_type,
        notice.audio_file_id,
        notice.api_key_id,
        notice.channel,
        notice.rule_id,
        notice.payload,
    )
    return delivery_id


async def cancel_for_rule(conn: asyncpg.Connection, rule_id: uuid.UUID, reason: str) -> None:
    """A disabled or removed rule: what is still queued for it is cancelled (kept in the log)."""
    await conn.execute(CANCEL_PENDING_FOR_RULE, rule_id, reason)
