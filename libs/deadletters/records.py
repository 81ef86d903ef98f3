"""The `dead_letters` table (its one owner): recorded once per advisory, listed per API key,
marked on requeue."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec

from libs.formats import DateTime, Uuid, described

# audio_file_id is linked only when the job exists (a foreign or hand-made event has none).
INSERT = """
INSERT INTO media_pipeline.dead_letters (
    kind, stream, consumer, stream_seq, deliveries, reason, subject, event_type, event_id,
    audio_file_id, tenant_prefix, payload, advisory, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
        (SELECT id FROM media_pipeline.audio_files WHERE id = $10), $11, $12, $13,
        coalesce($14, now()))
ON CONFLICT (stream, consumer, stream_seq, kind, deliveries) DO NOTHING
RETURNING id, audio_file_id
"""
# $1: the API key whose jobs to show, NULL for every dead letter (operators, bootstrap key).
LIST = """
SELECT d.id, d.kind, d.stream, d.consumer, d.stream_seq, d.deliveries, d.reason, d.subject,
       d.event_type, d.event_id, d.audio_file_id, d.tenant_prefix, d.payload, d.occurred_at,
       d.captured_at, d.requeued_at, d.requeue_count, a.api_key_id, a.status AS job_status
FROM media_pipeline.dead_letters d
LEFT JOIN media_pipeline.audio_files a ON a.id = d.audio_file_id
WHERE ($1::uuid IS NULL OR a.api_key_id = $1)
  AND ($2::timestamptz IS NULL OR d.captured_at >= $2)
  AND (NOT $3 OR d.requeued_at IS NULL)
  AND ($4::uuid IS NULL OR d.audio_file_id = $4)
ORDER BY d.captured_at DESC, d.id DESC
LIMIT $5
"""
GET = """
SELECT d.id, d.kind, d.stream, d.consumer, d.stream_seq, d.deliveries, d.reason, d.subject,
       d.event_type, d.event_id, d.audio_file_id, d.tenant_prefix, d.payload, d.occurred_at,
       d.captured_at, d.requeued_at, d.requeue_count, a.api_key_id, a.status AS job_status
FROM media_pipeline.dead_letters d
LEFT JOIN media_pipeline.audio_files a ON a.id = d.audio_file_id
WHERE d.id = $1 AND ($2::uuid IS NULL OR a.api_key_id = $2)
"""
MARK_REQUEUED = """
UPDATE media_pipeline.dead_letters
SET requeued_at = now(), requeue_count = requeue_count + 1
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    kind: str
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int
    reason: str | None
    subject: str | None
    event_type: str | None
    event_id: str | None
    audio_file_id: uuid.UUID | None
    tenant_prefix: str | None
    payload: bytes | None
    advisory: dict[str, Any]
    occurred_at: datetime | None


async def list_(
    pool: asyncpg.Pool,
    *,
    api_key_id: uuid.UUID | None,
    since: datetime | None,
    open_only: bool,
    audio_file_id: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first; `api_key_id` None means every dead letter (operators, bootstrap key)."""
    return list(await pool.fetch(LIST, api_key_id, since, open_only, audio_file_id, limit))


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, dead_letter_id: int, *, api_key_id: uuid.UUID | None
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET, dead_letter_id, api_key_id)
    return row


async def mark_requeued(conn: asyncpg.Connection | asyncpg.Pool, dead_letter_id: int) -> None:
    await conn.execute(MARK_REQUEUED, dead_letter_id)


async def insert(conn: asyncpg.Connection | asyncpg.Pool, dl: NewDeadLetter) -> int | None:
    """The new row's id, or None when this advisory was recorded already."""
    row = await conn.fetchrow(
        INSERT,
        dl.kind,
        dl.stream,
        dl.consumer,
        dl.stream_seq,
        dl.deliveries,
        dl.reason,
        dl.subject,
        dl.event_type,
        dl.event_id,
        dl.audio_file_id,
        dl.tenant_prefix,
        dl.payload,
        dl.advisory,
        dl.occurred_at,
    )
    return None if row is None else int(row["id"])


class DeadLetter(msgspec.Struct):
    """A message JetStream gave up on, with its original event inline when it is JSON."""

    id: int
    kind: Literal["max_deliveries", "terminated"]
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int
    reason: str | None
    subject: str | None
    event_type: str | None
    event_id: str | None
    audio_file_id: Uuid | None
    job_status: str | None
    tenant_prefix: str | None
    event: Annotated[Any, described("the original event (JSON), null when not decodable")]
    occurred_at: DateTime
    captured_at: DateTime
    requeued_at: DateTime | None
    requeue_count: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeadLetter:
        """The API / CLI view of a row of LIST / GET (the original event inline when JSON)."""
        event: Any = None
        if row["payload"] is not None:
            try:
                event = json.loads(bytes(row["payload"]))
            except ValueError:
                event = None
        return cls(
            id=row["id"],
            kind=row["kind"],
            stream=row["stream"],
            consumer=row["consumer"],
            stream_seq=row["stream_seq"],
            deliveries=row["deliveries"],
            reason=row["reason"],
            subject=row["subject"],
            event_type=row["event_type"],
            event_id=row["event_id"],
            audio_file_id=str(row["audio_file_id"]) if row["audio_file_id"] else None,
            job_status=row["job_status"],
            tenant_prefix=row["tenant_prefix"],
            event=event,
            occurred_at=row["occurred_at"].isoformat(),
            captured_at=row["captured_at"].isoformat(),
            requeued_at=row["requeued_at"].isoformat() if row["requeued_at"] else None,
            requeue_count=row["requeue_count"],
        )


# A deleted job's dead letters keep their record but not the original event (an AudioStored
# carries the phone). Runs in the deletion's transaction.
FORGET_PAYLOADS_OF_JOB = """
UPDATE media_pipeline.dead_letters SET payload = NULL WHERE audio_file_id = $1
"""


async def forget_payloads_of_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    await conn.execute(FORGET_PAYLOADS_OF_JOB, job_id)
