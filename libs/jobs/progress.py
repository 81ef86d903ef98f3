"""Progress of a running job: the latest stage in `audio_files.progress` (what /status shows)
and a JobProgress event on `transcribe.job.progress.<tenant>`, at most one per job every
`min_interval` seconds unless the stage changes (a 3-hour recording in 10-minute chunks sends a
handful, not thousands). Row and event are one statement, so one transaction (the outbox rule);
the rate limit lives in the row, so it holds across transcriber replicas.

Only a job that is `processing` takes progress: a late report of a job that finished, failed
or was deleted meanwhile writes nothing.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from libs import outbox
from libs.contracts import JobProgress, new_event_id, subjects, utcnow

MIN_INTERVAL_SECONDS = 5.0


class StoredProgress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`audio_files.progress`: the latest stage a running job reported (what /status shows).
    Written here, read back by libs.jobs.views."""

    stage: str
    fraction: float | None  # always written (null while unknown)
    chunk: int | None = None  # chunk n of `chunks`, for long recordings
    chunks: int | None = None
    channel: int | None = None


REPORT = """
WITH upd AS (
    UPDATE media_pipeline.audio_files a
    SET progress = $2::jsonb, progress_updated_at = now(),
        progress_event_at = CASE
            WHEN $4 OR a.progress_event_at IS NULL
                 OR a.progress_event_at <= now() - make_interval(secs => $3)
                 OR a.progress->>'stage' IS DISTINCT FROM $2::jsonb->>'stage'
            THEN now() ELSE a.progress_event_at END
    WHERE a.id = $1 AND a.status = 'processing'
    RETURNING a.progress_event_at = now() AS emit
), event AS (
    INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
    SELECT $5, $6, $7, $8 FROM upd WHERE emit
    RETURNING 1
)
SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM event)
"""


async def report(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    job_id: uuid.UUID,
    tenant: str,
    stage: str,
    chunk: int | None = None,
    chunks: int | None = None,
    channel: int | None = None,
    trace_id: str | None = None,
    force_event: bool = False,
    min_interval: float = MIN_INTERVAL_SECONDS,
) -> bool:
    """Record the job's progress; True when an event went out with it (not rate-limited)."""
    fraction = None if not chunks or chunk is None else round(min(chunk / chunks, 1.0), 4)
    event = JobProgress(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        trace_id=trace_id,
        audio_file_id=str(job_id),
        tenant=tenant,
        stage=stage,
        fraction=fraction,
        chunk=chunk,
        chunks=chunks,
        channel=channel,
    )
    state = StoredProgress(
        stage=stage,
        fraction=fraction,
        chunk=chunk if chunks else None,
        chunks=chunks or None,
        channel=channel,
    )
    written = await pool.fetchval(
        REPORT,
        job_id,
        msgspec.to_builtins(state),
        min_interval,
        force_event,
        *outbox.event_row(event, subjects.job_progress(tenant)),
    )
    return int(written) == 2
