"""Deleting a job: durable, complete, idempotent. The owner of `job_deletions`.

Two halves, so a deletion is never half-done:

1. `request` (one transaction): the job becomes a tombstone (status 'deleted', `deleted_at`,
   `deleted_by`; ids and timestamps kept) and loses its personal content everywhere in
   Postgres: phone, url, object keys (they name the phone), the transcript text, raw response
   and chunk transcripts, webhook bodies, dead-letter payloads and its outbox events; a
   `job_deletions` row records every object key the job may have stored, and a
   TranscriptionDeleted event goes through the outbox (the `transcription.deleted` webhook).
   Its events already in the stream become due for erasure (libs/outbox/published.py; the
   finisher erases them). A job still queued or running is thereby cancelled: the
   transcriber's guarded transitions (lifecycle.py) skip a deleted job, so its message is acked
   without work and no result is announced.
2. `finish` / `finish_due`: remove the recorded objects; once every delete succeeded the row is
   finished (and forgets the keys). Object storage down: the row stays due, with a growing
   delay, and the finisher (services/ingest/sweeper.py, any number of replicas: rows are
   leased with FOR UPDATE SKIP LOCKED) completes it later.

A transcriber that was already transcribing when the job was deleted stops at its next chunk
and writes nothing more: it checks the tombstone before and after each upload
(services/transcriber/tombstone.py), and what it wrote while the deletion happened is handed
back (`hand_back`: the deletion is re-armed with those keys and finished at once, or by the
finisher when object storage is down). Completing a deleted job is refused (lifecycle.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import asyncpg
import structlog

from libs import outbox, search
from libs.blobstore import BlobStoreRefused, BlobStoreUnavailable
from libs.categories import store as category_store
from libs.contracts import TranscriptionDeleted, new_event_id, subjects, utcnow
from libs.db import rows_affected
from libs.deadletters import records as dead_letters
from libs.insights import store as insights
from libs.layout import (
    insights_key,
    redacted_audio_key,
    replaced_audio_key,
    transcript_keys,
    unredacted_transcript_key,
)
from libs.metrics import DELETIONS, DELETIONS_FINISHED
from libs.notifications import items as notification_items
from libs.outbox import published as published_events
from libs.webhooks import queue as webhooks

log = structlog.get_logger()

Reason = Literal["api", "retention", "audio_retention", "audio_replaced"]

# The first attempt is the request's own (inline, right after commit); the finisher leaves the
# row alone that long, then takes over if the requester died.
INLINE_LEASE_SECONDS = 60.0
MAX_RETRY_DELAY = 600.0

LOCK_JOB = """
SELECT a.id, a.api_key_id, a.tenant_prefix, a.campaign_name, a.recording_id, a.b2_object_key,
       a.transcript_prefix, a.status, a.trace_id,
       t.b2_transcript_json_key, t.b2_transcript_txt_key, t.b2_transcript_srt_key,
       t.b2_transcript_vtt_key
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.id = $1 AND ($2::uuid IS NULL OR a.api_key_id = $2)
FOR UPDATE OF a
"""
# Upsert: a job whose audio alone went (audio retention) already has a (finished) row.
INSERT_DELETION = """
INSERT INTO media_pipeline.job_deletions AS d
    (audio_file_id, requested_by, reason, object_keys, next_attempt_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (audio_file_id) DO UPDATE SET
    requested_at = now(), requested_by = EXCLUDED.requested_by, reason = EXCLUDED.reason,
    object_keys = ARRAY(SELECT DISTINCT k FROM unnest(d.object_keys || EXCLUDED.object_keys) AS k),
    finished_at = NULL, last_error = NULL, attempts = d.attempts + 1,
    next_attempt_at = EXCLUDED.next_attempt_at
"""
# The tombstone: what identifies the job and when things happened stays; what is personal goes.
# The object key names the phone, so it becomes `deleted/<id>` (UNIQUE, NOT NULL); the url's
# hash and the Idempotency-Key go too, so the same URL or key makes a new job afterwards.
TOMBSTONE_JOB = """
UPDATE media_pipeline.audio_files
SET status = 'deleted', deleted_at = now(), deleted_by = $2, updated_at = now(),
    phone = NULL, url = NULL, url_sha1 = NULL, idempotency_key = NULL, request_sha256 = NULL,
    last_error = NULL, prompt = NULL, b2_object_key = 'deleted/' || id::text
WHERE id = $1
RETURNING deleted_at
"""
TOMBSTONE_TRANSCRIPTION = """
UPDATE media_pipeline.transcriptions
SET text = '', raw_response = NULL, metadata = '{}'::jsonb, redaction = NULL,
    b2_transcript_json_key = '',
    b2_transcript_txt_key = '', b2_transcript_srt_key = NULL, b2_transcript_vtt_key = NULL,
    updated_at = now()
WHERE audio_file_id = $1
"""
DELETE_CHUNKS = "DELETE FROM media_pipeline.transcription_chunks WHERE audio_file_id = $1"
# A failure's text may name the object key (and so the phone); the tombstone needs none of it.
DELETE_FAILURES = "DELETE FROM media_pipeline.transcription_failures WHERE audio_file_id = $1"
LOAD = """
SELECT d.audio_file_id, d.requested_at, d.requested_by, d.reason, d.object_keys, d.attempts,
       d.last_error, d.finished_at, a.deleted_at
FROM media_pipeline.job_deletions d
JOIN media_pipeline.audio_files a ON a.id = d.audio_file_id
WHERE d.audio_file_id = $1
"""
# Lease due rows (the claim bumps `attempts`, the lease's generation: an outcome is recorded
# only by the holder of the current generation, so a `rearm` in between is never lost).
CLAIM_DUE = """
UPDATE media_pipeline.job_deletions d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE d.audio_file_id IN (
    SELECT audio_file_id FROM media_pipeline.job_deletions
    WHERE finished_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING d.audio_file_id, d.object_keys, d.attempts
"""
CLAIM_ONE = """
UPDATE media_pipeline.job_deletions
SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE audio_file_id = $1 AND finished_at IS NULL
RETURNING audio_file_id, object_keys, attempts
"""
MARK_FINISHED = """
UPDATE media_pipeline.job_deletions
SET finished_at = now(), last_error = NULL, object_keys = '{}'
WHERE audio_file_id = $1 AND attempts = $2 AND finished_at IS NULL
"""
MARK_FAILED = """
UPDATE media_pipeline.job_deletions
SET last_error = left($3, 2000), next_attempt_at = now() + make_interval(secs => $4)
WHERE audio_file_id = $1 AND attempts = $2 AND finished_at IS NULL
"""
# Only a deleted job's: a live job may have a (finished) row from its audio's retention or
# replacement, and the keys given here are then its live objects.
REARM = """
UPDATE media_pipeline.job_deletions
SET finished_at = NULL, next_attempt_at = now(), attempts = attempts + 1,
    object_keys = ARRAY(SELECT DISTINCT k FROM unnest(object_keys || $2::text[]) AS k)
WHERE audio_file_id = $1 AND EXISTS (
    SELECT 1 FROM media_pipeline.audio_files a WHERE a.id = $1 AND a.status = 'deleted')
"""
LAG = """
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(requested_at)), 0)::float8 AS oldest_seconds
FROM media_pipeline.job_deletions WHERE finished_at IS NULL
"""


class ObjectDeleter(Protocol):
    """What deleting objects needs of a BlobStore (deleting a missing key is not an error)."""

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Deletion:
    audio_file_id: uuid.UUID
    deleted_at: datetime
    requested_by: str
    reason: str
    # True once every object the job stored is gone from the bucket.
    objects_removed: bool
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Deletion:
        return cls(
            audio_file_id=row["audio_file_id"],
            deleted_at=row["deleted_at"],
            requested_by=row["requested_by"],
            reason=row["reason"],
            objects_removed=row["finished_at"] is not None,
            attempts=row["attempts"],
            last_error=row["last_error"],
        )


def audio_keys(audio_object_key: str) -> list[str]:
    """The job's audio, the redacted copy redaction may have stored beside it, and the `.wav`
    that replaces the original under `keep=redacted` (stored before the row points to it)."""
    keys = [audio_object_key, redacted_audio_key(audio_object_key)]
    return list(dict.fromkeys([*keys, replaced_audio_key(audio_object_key)]))


def planned_keys(audio_object_key: str, *, campaign: str, prefix: str) -> list[str]:
    """Every key the layout gives a job (libs/layout), whether written yet or not: its audio
    (which audio redaction may replace), the redacted copy, the four transcript formats and the
    unredacted original of a `keep=both` redaction. (Long audio's chunk files are local files,
    never objects.)"""
    planned = transcript_keys(audio_object_key, campaign=campaign, prefix=prefix)
    keys = audio_keys(audio_object_key)
    keys += [k for k in (planned.json, planned.txt, planned.srt, planned.vtt) if k]
    keys.append(unredacted_transcript_key(audio_object_key, campaign=campaign, prefix=prefix))
    return keys


def _object_keys(job: asyncpg.Record) -> list[str]:
    """Every object the job may have stored: the transcripts it has, and every key the layout
    gives it (a transcriber still running may upload them later)."""
    keys = [
        job[f"b2_transcript_{fmt}_key"]
        for fmt in ("json", "txt", "srt", "vtt")
        if job[f"b2_transcript_{fmt}_key"]
    ]
    keys += planned_keys(
        job["b2_object_key"], campaign=job["campaign_name"], prefix=job["transcript_prefix"]
    )
    # The categories and insights JSON services/insights writes beside the transcripts.
    keys.append(
        insights_key(str(job["id"]), campaign=job["campaign_name"], prefix=job["transcript_prefix"])
    )
    return list(dict.fromkeys(keys))


async def request(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    *,
    api_key_id: uuid.UUID | None,
    requested_by: str,
    reason: Reason,
    trace_id: str | None = None,
    forget_events: bool = True,
) -> tuple[Deletion, bool] | None:
    """Tombstone the job and record its deletion (one transaction). Returns the deletion and
    whether this call made it (False: it was already deleted; nothing is written); None when
    there is no such job (for `api_key_id`: no such job of that key). `forget_events=False`:
    the caller has already removed the job's outbox events (a batch: outbox.forget_jobs)."""
    async with conn.transaction():
        job = await conn.fetchrow(LOCK_JOB, job_id, api_key_id)
        if job is None:
            return None
        if job["status"] == "deleted":
            row = await conn.fetchrow(LOAD, job_id)
            return Deletion.from_row(row), False
        await conn.execute(
            INSERT_DELETION, job_id, requested_by, reason, _object_keys(job), INLINE_LEASE_SECONDS
        )
        await conn.fetchval(TOMBSTONE_JOB, job_id, requested_by)
        await conn.execute(TOMBSTONE_TRANSCRIPTION, job_id)
        await conn.execute(DELETE_CHUNKS, job_id)
        await conn.execute(DELETE_FAILURES, job_id)
        await search.forget(conn, job_id)  # search index (issue #20): retention comes here too
        await category_store.forget(conn, job_id)  # categories (issue #21): matches go too
        await insights.forget(conn, job_id)  # call insights (issue 21)
        await webhooks.scrub_for_deleted_job(conn, job_id)
        await dead_letters.forget_payloads_of_job(conn, job_id)
        await notification_items.forget_job(conn, job_id)  # notifications (issue #22)
        if forget_events:
            await outbox.forget_job(conn, job_id)
        await published_events.erase_job(conn, job_id)  # its events in the stream: erased
        event = TranscriptionDeleted(
            event_id=new_event_id(),
            occurred_at=utcnow(),
            trace_id=trace_id or job["trace_id"],
            audio_file_id=str(job_id),
            tenant=job["tenant_prefix"],
            deleted_by=requested_by,
            reason=reason,
            recording_id=job["recording_id"],
        )
        await outbox.enqueue(conn, event, subjects.transcript_deleted(job["tenant_prefix"]))
        row = await conn.fetchrow(LOAD, job_id)
    DELETIONS.labels(reason=reason).inc()
    log.info("job_deleted", audio_file_id=str(job_id), reason=reason, by=requested_by)
    return Deletion.from_row(row), True


async def load(conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID) -> Deletion | None:
    row = await conn.fetchrow(LOAD, job_id)
    return None if row is None else Deletion.from_row(row)


def retry_delay(attempts: int) -> float:
    return float(min(MAX_RETRY_DELAY, 5.0 * 2 ** max(0, attempts - 1)))


async def _remove(
    pool: asyncpg.Pool, store: ObjectDeleter, job_id: uuid.UUID, keys: Sequence[str], gen: int
) -> bool:
    results = await asyncio.gather(*(store.delete(k) for k in keys), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, BlobStoreUnavailable | BlobStoreRefused):
            raise error
    if errors:
        # Not the error's text: it names the object key, and so the phone.
        reason = f"{type(errors[0]).__name__}: {len(errors)} of {len(keys)} objects not removed"
        await pool.execute(MARK_FAILED, job_id, gen, reason, retry_delay(gen))
        log.warning("deletion_objects_pending", audio_file_id=str(job_id), error=reason)
        return False
    if rows_affected(await pool.execute(MARK_FINISHED, job_id, gen)) == 1:
        DELETIONS_FINISHED.inc()
    return True


async def finish(pool: asyncpg.Pool, store: ObjectDeleter, job_id: uuid.UUID) -> bool:
    """Remove the objects of one deletion now (the request's inline attempt); True when every
    object is gone (or was already), False when they wait for the finisher."""
    row = await pool.fetchrow(CLAIM_ONE, job_id, INLINE_LEASE_SECONDS)
    if row is None:
        return True
    return await _remove(pool, store, job_id, row["object_keys"], row["attempts"])


@dataclass(frozen=True, slots=True)
class FinishRun:
    finished: int = 0
    pending: int = 0


async def finish_due(
    pool: asyncpg.Pool, store: ObjectDeleter, *, limit: int = 100, lease_seconds: float = 300.0
) -> FinishRun:
    """One batch of the finisher: lease due deletions and remove their objects."""
    rows = await pool.fetch(CLAIM_DUE, limit, lease_seconds)
    done = await asyncio.gather(
        *(_remove(pool, store, r["audio_file_id"], r["object_keys"], r["attempts"]) for r in rows)
    )
    return FinishRun(finished=sum(done), pending=len(done) - sum(done))


async def rearm(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, keys: Sequence[str]
) -> None:
    """Objects were written for a job after its deletion (a transcriber that was already
    running): make the deletion due again, with those keys too."""
    await conn.execute(REARM, job_id, list(keys))


async def hand_back(
    pool: asyncpg.Pool, store: ObjectDeleter, job_id: uuid.UUID, keys: Sequence[str]
) -> bool:
    """Objects written for a job that turned out to be deleted meanwhile (a transcriber that was
    running): re-arm its deletion with those keys, durably, then remove them now. True when every
    object of the deletion is gone; False when object storage is down (the finisher completes
    it later). A job without a deletion row is left alone (nothing to re-arm)."""
    await rearm(pool, job_id, keys)
    return await finish(pool, store, job_id)


async def lag(pool: asyncpg.Pool) -> tuple[int, float]:
    """Deletions whose objects are not all removed yet, and the age of the oldest (seconds)."""
    row = await pool.fetchrow(LAG)
    return int(row["pending"]), float(row["oldest_seconds"])
