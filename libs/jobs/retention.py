"""Retention: expired jobs are deleted, expired audio removed, through the deletion path.

Each job carries its expiry times, set at submit from its key's TTLs (shortened by the job's
own): `transcript_expires_at` deletes the whole job exactly as DELETE does (tombstone, every
object, a `transcription.deleted` webhook with reason `retention`); `audio_expires_at` removes
only the audio object of a finished job (`audio_removed_at`; its transcripts stay). Batches are
claimed with FOR UPDATE SKIP LOCKED, so any number of sweepers (one per ingest replica) share
the work and never take the same job twice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg

from libs import outbox
from libs.jobs import deletion
from libs.metrics import RETENTION_REMOVED

RETENTION_BY = "retention"

DUE_JOBS = """
SELECT a.id FROM media_pipeline.audio_files a
WHERE a.transcript_expires_at <= now() AND a.status <> 'deleted'
ORDER BY a.transcript_expires_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
# Only a finished job's audio: a queued job still needs it (its TTL is met when it finishes).
DUE_AUDIO = """
SELECT a.id, a.b2_object_key FROM media_pipeline.audio_files a
WHERE a.audio_expires_at <= now() AND a.audio_removed_at IS NULL
  AND a.status IN ('completed', 'failed')
ORDER BY a.audio_expires_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
MARK_AUDIO_REMOVED = """
UPDATE media_pipeline.audio_files SET audio_removed_at = now(), updated_at = now() WHERE id = $1
"""
# How far behind: the oldest expiry that has passed without its removal.
LAG = """
SELECT coalesce(extract(epoch FROM now() - least(
    (SELECT min(transcript_expires_at) FROM media_pipeline.audio_files
     WHERE transcript_expires_at <= now() AND status <> 'deleted'),
    (SELECT min(audio_expires_at) FROM media_pipeline.audio_files
     WHERE audio_expires_at <= now() AND audio_removed_at IS NULL
       AND status IN ('completed', 'failed')))), 0)::float8
"""


@dataclass(frozen=True, slots=True)
class Expired:
    jobs: int = 0
    audio: int = 0


async def expire_jobs(pool: asyncpg.Pool, store: deletion.ObjectDeleter, *, limit: int) -> int:
    """Delete up to `limit` expired jobs (one transaction for the batch), then their objects."""
    async with pool.acquire() as conn, conn.transaction():
        ids: list[uuid.UUID] = [r["id"] for r in await conn.fetch(DUE_JOBS, limit)]
        # Their events leave the outbox in one pass (before the deletions announce themselves).
        await outbox.forget_jobs(conn, ids)
        for job_id in ids:
            await deletion.request(
                conn,
                job_id,
                api_key_id=None,
                requested_by=RETENTION_BY,
                reason="retention",
                forget_events=False,
            )
    await asyncio.gather(*(deletion.finish(pool, store, job_id) for job_id in ids))
    RETENTION_REMOVED.labels(what="job").inc(len(ids))
    return len(ids)


async def expire_audio(pool: asyncpg.Pool, store: deletion.ObjectDeleter, *, limit: int) -> int:
    """Remove the audio object of up to `limit` finished jobs whose audio TTL passed."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(DUE_AUDIO, limit)
        for row in rows:
            await conn.execute(MARK_AUDIO_REMOVED, row["id"])
            await conn.execute(
                deletion.INSERT_DELETION,
                row["id"],
                RETENTION_BY,
                "audio_retention",
                deletion.audio_keys(row["b2_object_key"]),
                deletion.INLINE_LEASE_SECONDS,
            )
    await asyncio.gather(*(deletion.finish(pool, store, row["id"]) for row in rows))
    RETENTION_REMOVED.labels(what="audio").inc(len(rows))
    return len(rows)


async def lag(pool: asyncpg.Pool) -> float:
    """Seconds since the oldest expiry still waiting for its removal (0: none)."""
    return float(await pool.fetchval(LAG))
