"""What API users and operators can do with deliveries: list them (with every attempt), resend
one, recover every failed one since a time, send a test event, inspect and re-enable a key's
endpoint. Shared by the HTTP routes (scoped to the caller's key) and the CLI (any key).

Never exposed: response bodies (not even stored) and signing secrets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import msgspec

from libs import apikeys, errors
from libs.apikeys import endpoints
from libs.contracts import new_event_id, utcnow
from libs.db import rows_affected
from libs.formats import DateTime, Uri, Uuid, described
from libs.safehttp import BlockedUrl, parse_allowlist, validate_url
from libs.webhooks import payload

# Errors shown to API users are cut short: they are receivers' words, not ours.
SHOWN_ERROR_CHARS = 200

_DELIVERY_COLUMNS = """
d.id, d.event_id, d.event_type, d.audio_file_id, d.api_key_id, d.endpoint_url, d.status,
d.attempts, d.next_attempt_at, d.last_status_code, left(d.last_error, 200) AS last_error,
d.last_latency_ms, d.created_at, d.updated_at
"""
JOB_OWNER = "SELECT api_key_id FROM media_pipeline.audio_files WHERE id = $1"
LIST_FOR_JOB = (
    "SELECT"
    + _DELIVERY_COLUMNS
    + """FROM media_pipeline.webhook_deliveries d
WHERE d.audio_file_id = $1 AND ($2::uuid IS NULL OR d.api_key_id = $2)
ORDER BY d.created_at, d.id
"""
)
GET_DELIVERY = (
    "SELECT"
    + _DELIVERY_COLUMNS
    + """, (k.webhook_url = d.endpoint_url AND k.webhook_disabled_at IS NOT NULL) AS endpoint_disabled
FROM media_pipeline.webhook_deliveries d
LEFT JOIN media_pipeline.api_keys k ON k.id = d.api_key_id
WHERE d.id = $1 AND ($2::uuid IS NULL OR d.api_key_id = $2)
"""
)
# A deleted job's deliveries lost their bodies (libs/webhooks/queue.py SCRUB_FOR_DELETED_JOB)
# and are never sent again; its transcription.deleted webhook, written after the scrub, is whole.
OF_DELETED_JOB = """
SELECT d.event_type <> 'transcription.deleted' AND a.status = 'deleted'
FROM media_pipeline.webhook_deliveries d
JOIN media_pipeline.audio_files a ON a.id = d.audio_file_id
WHERE d.id = $1
"""
ATTEMPTS = """
SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, left(error, 200) AS error
FROM media_pipeline.webhook_attempts WHERE delivery_id = ANY($1::bigint[])
ORDER BY delivery_id, attempt, id
"""
# A new round: the schedule starts again from "immediately"; the attempt log is kept. A row
# whose attempt is in flight (lease live) is marked `rearm` instead: the new round starts when
# that attempt ends (libs/webhooks/queue.py FINISH), never as a second POST beside it.
REARM = """
UPDATE media_pipeline.webhook_deliveries d
SET status = 'pending',
    schedule_step = CASE WHEN d.leased_at IS NOT NULL AND d.next_attempt_at > now()
                         THEN d.schedule_step ELSE 0 END,
    next_attempt_at = CASE WHEN d.leased_at IS NOT NULL AND d.next_attempt_at > now()
                           THEN d.next_attempt_at ELSE now() END,
    rearm = (d.leased_at IS NOT NULL AND d.next_attempt_at > now()), updated_at = now()
WHERE id = $1
"""
# Every failed (or cancelled) delivery created in [since, until) whose endpoint is not disabled.
# Test events are left out: they were a question asked once; so are a deleted job's (scrubbed).
RECOVER = """
UPDATE media_pipeline.webhook_deliveries d
SET status = 'pending',
    schedule_step = CASE WHEN d.leased_at IS NOT NULL AND d.next_attempt_at > now()
                         THEN d.schedule_step ELSE 0 END,
    next_attempt_at = CASE WHEN d.leased_at IS NOT NULL AND d.next_attempt_at > now()
                           THEN d.next_attempt_at ELSE now() END,
    rearm = (d.leased_at IS NOT NULL AND d.next_attempt_at > now()), updated_at = now()
WHERE d.status IN ('failed', 'cancelled')
  AND d.created_at >= $1 AND d.created_at < coalesce($2::timestamptz, 'infinity')
  AND ($3::uuid IS NULL OR d.api_key_id = $3)
  AND d.event_type <> 'webhook.test'
  AND NOT EXISTS (
      SELECT 1 FROM media_pipeline.api_keys k
      WHERE k.id = d.api_key_id AND k.webhook_url = d.endpoint_url
        AND k.webhook_disabled_at IS NOT NULL)
  AND NOT (d.event_type <> 'transcription.deleted' AND EXISTS (
      SELECT 1 FROM media_pipeline.audio_files a
      WHERE a.id = d.audio_file_id AND a.status = 'deleted'))
"""
INSERT_TEST = """
INSERT INTO media_pipeline.webhook_deliveries
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload)
VALUES ($1, 'webhook.test', NULL, $2, $3, $4)
RETURNING id
"""


class NotFound(errors.NotFound):
    """No such delivery, or not the caller's."""


class EndpointDisabled(errors.Conflict):
    """The key's default endpoint is disabled: re-enable it before resending to it."""

    code = "endpoint_disabled"


class JobDeleted(errors.Conflict):
    """The delivery's job was deleted: its body is gone, it is not sent again."""

    code = "job_deleted"


class NoEndpoint(errors.Conflict):
    """The key has no default webhook URL (and none was given)."""

    code = "no_endpoint"


class ManagedByEnvironment(errors.Conflict):
    """The bootstrap key's endpoint and secret come from WEBHOOK_URL / WEBHOOK_SECRET."""

    code = "managed_by_environment"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose deliveries an operation may touch: one key (API users) or every key (operators)."""

    api_key_id: uuid.UUID | None

    @classmethod
    def key(cls, api_key_id: str | uuid.UUID) -> Scope:
        return cls(uuid.UUID(str(api_key_id)))


OPERATOR = Scope(None)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


DeliveryStatus = Literal["pending", "succeeded", "failed", "cancelled"]


class Attempt(msgspec.Struct):
    attempt: int
    at: DateTime | None
    status_code: int | None
    latency_ms: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Attempt:
        return cls(
            attempt=row["attempt"],
            at=_iso(row["attempted_at"]),
            status_code=row["status_code"],
            latency_ms=row["latency_ms"],
            error=row["error"],
        )


class Delivery(msgspec.Struct):
    """A webhook delivery and every attempt (status code, latency, error; never bodies)."""

    id: int
    webhook_id: Annotated[
        str,
        msgspec.Meta(
            description="the webhook-id header: the event id", extra_json_schema={"format": "uuid"}
        ),
    ]
    event_type: str
    audio_file_id: Uuid | None
    endpoint_url: Uri
    status: DeliveryStatus
    attempts: int
    next_attempt_at: DateTime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    created_at: DateTime | None
    updated_at: DateTime | None
    attempt_log: list[Attempt]

    @classmethod
    def from_row(cls, row: asyncpg.Record, attempts: list[asyncpg.Record]) -> Delivery:
        return cls(
            id=row["id"],
            webhook_id=str(row["event_id"]),
            event_type=row["event_type"],
            audio_file_id=str(row["audio_file_id"]) if row["audio_file_id"] else None,
            endpoint_url=row["endpoint_url"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=_iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            last_latency_ms=row["last_latency_ms"],
            created_at=_iso(row["created_at"]),
            updated_at=_iso(row["updated_at"]),
            attempt_log=[Attempt.from_row(a) for a in attempts],
        )


class Endpoint(msgspec.Struct):
    """The key's default webhook endpoint and its health."""

    webhook_url: Uri | None
    signed: Annotated[bool, described("always true: every key signs its webhooks")]
    secret_rotation_in_progress: bool
    enabled: bool
    disabled_at: DateTime | None
    disabled_reason: str | None
    failing_since: DateTime | None
    consecutive_failures: int
    progress: Annotated[
        bool, described("transcription.progress webhooks are sent for the key's running jobs")
    ]
    webhook_secret: (
        Annotated[str, described("the new whsec_ secret, shown once (rotate-secret)")]
        | msgspec.UnsetType
    ) = msgspec.UNSET

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Endpoint:
        return cls(
            webhook_url=row["webhook_url"],
            signed=row["signed"],
            secret_rotation_in_progress=row["rotating"],
            enabled=row["webhook_url"] is not None and row["webhook_disabled_at"] is None,
            disabled_at=_iso(row["webhook_disabled_at"]),
            disabled_reason=row["webhook_disabled_reason"],
            failing_since=_iso(row["webhook_failing_since"]),
            consecutive_failures=row["webhook_consecutive_failures"],
            progress=row["webhook_progress"],
        )


async def _with_attempts(
    conn: asyncpg.Connection | asyncpg.Pool, rows: list[asyncpg.Record]
) -> list[Delivery]:
    logs = await conn.fetch(ATTEMPTS, [r["id"] for r in rows])
    by_delivery: dict[int, list[asyncpg.Record]] = {}
    for a in logs:
        by_delivery.setdefault(a["delivery_id"], []).append(a)
    return [Delivery.from_row(r, by_delivery.get(r["id"], [])) for r in rows]


async def list_for_job(
    conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, audio_file_id: uuid.UUID
) -> list[Delivery]:
    """Every delivery of a job with its attempts; NotFound when the job is not the scope's."""
    owner = await conn.fetchval(JOB_OWNER, audio_file_id)
    if owner is None or (scope.api_key_id is not None and owner != scope.api_key_id):
        raise NotFound("no such job")
    rows = await conn.fetch(LIST_FOR_JOB, audio_file_id, scope.api_key_id)
    return await _with_attempts(conn, rows)


async def get(conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, delivery_id: int) -> Delivery:
    row = await conn.fetchrow(GET_DELIVERY, delivery_id, scope.api_key_id)
    if row is None:
        raise NotFound("no such delivery")
    return (await _with_attempts(conn, [row]))[0]


async def resend(conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, delivery_id: int) -> None:
    """Start a new round for one delivery now (same webhook-id, same body)."""
    row = await conn.fetchrow(GET_DELIVERY, delivery_id, scope.api_key_id)
    if row is None:
        raise NotFound("no such delivery")
    if row["endpoint_disabled"]:
        raise EndpointDisabled("the endpoint is disabled; re-enable it first")
    if await conn.fetchval(OF_DELETED_JOB, delivery_id):
        raise JobDeleted("the delivery's job was deleted; its content is gone")
    await conn.execute(REARM, delivery_id)


async def recover(
    conn: asyncpg.Connection | asyncpg.Pool,
    scope: Scope,
    since: datetime,
    until: datetime | None = None,
) -> int:
    """Re-arm every failed or cancelled delivery created since `since` (not a deleted job's);
    returns how many."""
    return rows_affected(await conn.execute(RECOVER, since, until, scope.api_key_id))


async def send_test(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, url: str | None
) -> int:
    """Queue a signed `webhook.test` event to `url` (default: the key's endpoint, even when
    disabled, so its owner can check it before re-enabling). Returns the delivery id."""
    key = await endpoints.get(conn, api_key_id)
    if key is None:
        raise NotFound("no such key")
    target = url or key["webhook_url"]
    if not target:
        raise NoEndpoint("this key has no webhook URL; give one")
    event_id = new_event_id()
    body = payload.test_body(event_id=event_id, occurred_at=utcnow(), key_hint=key["key_hint"])
    delivery_id: int = await conn.fetchval(
        INSERT_TEST, uuid.UUID(event_id), api_key_id, target, body
    )
    return delivery_id


async def endpoint(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> Endpoint:
    row = await endpoints.get(conn, api_key_id)
    if row is None:
        raise NotFound("no such key")
    return Endpoint.from_row(row)


async def set_progress(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, enabled: bool
) -> None:
    """Opt the key in (or out) of `transcription.progress` webhooks."""
    if not await endpoints.set_progress(conn, api_key_id, enabled):
        raise NotFound("no such key")


async def enable(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> None:
    """Re-enable the key's endpoint (after 410 or auto-disable); the failure streak restarts."""
    if not await endpoints.enable(conn, api_key_id):
        raise NoEndpoint("this key has no webhook URL")


async def find_key(conn: asyncpg.Connection | asyncpg.Pool, id_or_hint: str) -> uuid.UUID:
    keys = await endpoints.find_key(conn, id_or_hint)
    if len(keys) != 1:
        raise NotFound("no single active key with that id or hint")
    return keys[0]


async def rotate_secret(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> str:
    """Start a rotation: returns the new `whsec_` secret; the old one keeps signing too."""
    secret = apikeys.generate_webhook_secret()
    if not await endpoints.rotate(conn, api_key_id, secret):
        raise ManagedByEnvironment("the bootstrap key's secret is WEBHOOK_SECRET; change it there")
    return secret


async def finish_rotation(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID) -> None:
    """Stop signing with the previous secret."""
    if not await endpoints.finish_rotation(conn, api_key_id):
        raise ManagedByEnvironment("the bootstrap key's secret is WEBHOOK_SECRET; change it there")


def checked_url(url: str | None, ssrf_allowlist: str) -> str:
    """A webhook URL the SSRF policy lets us POST to (http(s), no private network unless its
    `host:port` is in SSRF_ALLOWLIST): the one check of the API (PUT endpoint, test url) and
    the CLI (`keys create --webhook-url`, `webhooks set-url`, `webhooks test --url`)."""
    if not url:
        raise errors.InvalidInput("give the webhook URL as url", code="missing_url")
    try:
        validate_url(url, parse_allowlist(ssrf_allowlist))
    except BlockedUrl as exc:
        raise errors.InvalidInput(f"url refused: {exc.message}", code=f"url_{exc.code}") from exc
    return url


async def set_url(conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, url: str) -> None:
    """Point the key's default webhook at `url` (enabled, streak reset). The signing secret,
    which every key has had since its creation, is unchanged."""
    if not await endpoints.set_url(conn, api_key_id, url):
        raise ManagedByEnvironment("the bootstrap key's endpoint is WEBHOOK_URL; change it there")


# Notification messages (libs/notifications) on the same queue: newest first, of one rule or of
# every rule the scope sees.
LIST_NOTIFICATIONS = (
    "SELECT"
    + _DELIVERY_COLUMNS
    + """FROM media_pipeline.webhook_deliveries d
WHERE d.rule_id IS NOT NULL AND ($1::uuid IS NULL OR d.rule_id = $1)
  AND ($2::uuid IS NULL OR d.api_key_id = $2)
ORDER BY d.created_at DESC, d.id DESC
LIMIT $3
"""
)


async def list_notifications(
    conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, rule_id: uuid.UUID | None, limit: int
) -> list[Delivery]:
    """Notification deliveries (Slack, e-mail) with their attempts."""
    rows = await conn.fetch(LIST_NOTIFICATIONS, rule_id, scope.api_key_id, limit)
    return await _with_attempts(conn, rows)
