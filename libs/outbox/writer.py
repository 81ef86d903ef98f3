"""Writing events: always inside the caller's transaction, next to the state they announce."""

from __future__ import annotations

import uuid

import asyncpg

from libs.contracts import Event, encode
from libs.db import rows_affected

INSERT_EVENT = """
INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
VALUES ($1, $2, $3, $4)
"""


def event_row(event: Event, subject: str) -> tuple[str, str, bytes, dict[str, str]]:
    """The outbox columns (event_id, subject, payload, headers) for `event`, for statements
    that insert the event themselves, as a CTE beside the state change (one statement is one
    transaction, and one round trip)."""
    headers = {"Nats-Msg-Id": event.event_id}
    if event.trace_id:
        headers["Trace-Id"] = event.trace_id
    return event.event_id, subject, encode(event), headers


async def enqueue(conn: asyncpg.Connection, event: Event, subject: str) -> None:
    if not conn.is_in_transaction():
        # An event written outside the state change's transaction breaks the outbox guarantee.
        raise RuntimeError("outbox.enqueue must run inside the state change's transaction")
    await conn.execute(INSERT_EVENT, *event_row(event, subject))


# A deleted job's events leave the outbox, published or not: an unpublished result must not be
# announced any more, and published copies carry its phone (AudioStored). The outbox has no job
# column, so this scans it; published rows are purged after a few days (relay.PURGE_PUBLISHED),
# which keeps the table small. A row the relay holds is waited for (its lock), then deleted.
DELETE_EVENTS_OF_JOB = """
DELETE FROM media_pipeline.outbox
WHERE position(convert_to($1::text, 'UTF8') IN payload) > 0
"""


# The same for a batch of jobs (retention) in ONE pass over the outbox instead of one per job.
# The 36 bytes after `"audio_file_id":"` (a byte search; no UTF-8 decoding, no regex: ~10x
# cheaper per row, bench/lifecycle_bench.py).
DELETE_EVENTS_OF_JOBS = """
DELETE FROM media_pipeline.outbox
WHERE encode(substring(payload FROM position('"audio_file_id":"'::bytea IN payload) + 17 FOR 36),
             'escape') = ANY($1::text[])
"""


async def forget_jobs(conn: asyncpg.Connection, job_ids: list[uuid.UUID]) -> int:
    """Delete every event row of these jobs (inside the deletions' transaction)."""
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.forget_jobs must run inside the deletion's transaction")
    if not job_ids:
        return 0
    return rows_affected(await conn.execute(DELETE_EVENTS_OF_JOBS, [str(j) for j in job_ids]))


async def forget_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> int:
    """Delete every event row that names the job (inside the deletion's transaction)."""
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.forget_job must run inside the deletion's transaction")
    return rows_affected(await conn.execute(DELETE_EVENTS_OF_JOB, f'"audio_file_id":"{job_id}"'))
