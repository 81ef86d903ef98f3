"""The one way to put a job back on the stream: status back to 'queued', its failure record
cleared, and a forced AudioStored through the outbox, all in one transaction.

A job whose audio retention removed its audio (`audio_removed_at`) is never requeued: there is
nothing to transcribe, and a rerun would only turn its finished transcript into a failure
(`AudioExpired`, 409 `audio_expired`).

Used by a client's rerun (`POST /api/media/rerun/{id}`, guarded: only a finished job, unless
forced), by `transcribe jobs requeue-failed` and by dead-letter requeues (unguarded: the job's
message is dead or waiting out a cooldown, so nothing else will move it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs import errors, outbox, search
from libs.categories import store as category_store
from libs.contracts import subjects
from libs.insights import store as insights
from libs.jobs.record import JOB_COLUMNS, Job, audio_stored_event

# Guarded unless $2: a rerun of a job that is still queued or running would put a second event
# on the stream, and two racing reruns of a finished job requeue it once.
REQUEUE = (
    """
UPDATE media_pipeline.audio_files a SET status = 'queued', last_error = NULL, updated_at = now()
WHERE a.id = $1 AND a.status <> 'deleted' AND (a.status IN ('completed', 'failed') OR $2)
  AND a.audio_removed_at IS NULL
RETURNING"""
    + JOB_COLUMNS
)
AUDIO_REMOVED = """
SELECT audio_removed_at IS NOT NULL FROM media_pipeline.audio_files
WHERE id = $1 AND status <> 'deleted'
"""
CLEAR_FAILURE = "DELETE FROM media_pipeline.transcription_failures WHERE audio_file_id = $1"
# Failed jobs: a transcription_failures row (transient: waiting out a cooldown; permanent:
# given up), or status 'failed' without one.
FAILED_JOBS = """
SELECT a.id, a.tenant_prefix, coalesce(f.status, 'permanent') AS failure_status, f.error_code,
       coalesce(f.last_failed_at, a.updated_at) AS failed_at
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
WHERE a.status NOT IN ('completed', 'deleted')
  AND (f.audio_file_id IS NOT NULL OR a.status = 'failed')
  AND (coalesce(f.status, 'permanent') = 'transient' OR $1)
  AND ($2::timestamptz IS NULL OR coalesce(f.last_failed_at, a.updated_at) >= $2)
  AND ($3::text IS NULL OR a.tenant_prefix = $3)
ORDER BY failed_at
LIMIT $4
"""


async def requeue(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    *,
    trace_id: str | None,
    even_if_active: bool = False,
) -> Job | None:
    """Requeue with `force` (a new transcription even if one exists); returns the job as
    requeued. None when the job does not exist, or is still queued or running and
    `even_if_active` is not set: nothing is written then. Raises AudioExpired (nothing written)
    when retention removed the job's audio. Joins the caller's transaction."""
    async with conn.transaction():
        row = await conn.fetchrow(REQUEUE, job_id, even_if_active)
        if row is None:
            if await conn.fetchval(AUDIO_REMOVED, job_id):
                raise AudioExpired("the job's audio was removed by its retention; submit it again")
            return None
        job = Job.from_row(row)
        await conn.execute(CLEAR_FAILURE, job.id)
        await search.forget(conn, job.id)  # search index (issue #20): only completed jobs
        await category_store.forget(conn, job.id)  # categories (issue #21): of completed jobs
        # Call insights (issue 21): the new transcript gets its own (pending until then).
        await insights.forget(conn, job.id)
        event = audio_stored_event(job, force=True, trace_id=trace_id)
        await outbox.enqueue(conn, event, subjects.audio_stored(job.tenant_prefix))
    return job


class AudioExpired(errors.Conflict):
    """The job's audio was removed by its retention: it cannot be transcribed again."""

    code = "audio_expired"


@dataclass(frozen=True, slots=True)
class Requeued:
    audio_file_id: str
    tenant_prefix: str
    failure_status: str
    error_code: str | None
    failed_at: datetime
    requeued: bool


async def requeue_failed(
    pool: asyncpg.Pool,
    *,
    since: datetime | None = None,
    tenant: str | None = None,
    include_permanent: bool = False,
    limit: int = 1000,
    dry_run: bool = False,
) -> list[Requeued]:
    """Failed jobs (transient ones waiting out a cooldown; permanent ones too if asked) run again
    now: each gets a forced AudioStored, and its failure record is cleared."""
    rows = await pool.fetch(FAILED_JOBS, include_permanent, since, tenant, limit)
    trace_id = f"requeue-failed-{uuid.uuid4().hex[:12]}"
    out = []
    for row in rows:
        done = False
        if not dry_run:
            async with pool.acquire() as conn:
                # Transient jobs are still 'queued' (waiting for a redelivery): requeue anyway.
                try:
                    job = await requeue(conn, row["id"], trace_id=trace_id, even_if_active=True)
                except AudioExpired:
                    job = None
                done = job is not None
        out.append(
            Requeued(
                audio_file_id=str(row["id"]),
                tenant_prefix=row["tenant_prefix"],
                failure_status=row["failure_status"],
                error_code=row["error_code"],
                failed_at=row["failed_at"],
                requeued=done,
            )
        )
    return out
