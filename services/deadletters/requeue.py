"""Putting a dead letter's work back, through the same paths as normal work.

* AudioStored (the transcriber gave up): a forced AudioStored through the outbox, like
  `POST /api/media/rerun/{id}`, so the job row and the event commit together.
* TranscriptReady / TranscriptionFailed (the notifier gave up): the original bytes published
  again with a NEW Nats-Msg-Id (the old one may still be inside the duplicate window) and the
  SAME event_id, so the notifier re-arms the same delivery and the webhook-id does not change.
"""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from libs import outbox
from libs.bus import BusUnavailable
from libs.contracts import subjects
from libs.db import CONNECTION_ERRORS, DatabaseUnavailable
from services.deadletters import repository as repo
from services.ingest.jobs import audio_stored_event

log = structlog.get_logger()

# Not guarded by status (unlike a client's rerun): the job's message is dead, so nothing else
# will ever move it.
REQUEUE_JOB = """
UPDATE media_pipeline.audio_files SET status = 'queued', last_error = NULL, updated_at = now()
WHERE id = $1
"""
CLEAR_FAILURE = "DELETE FROM media_pipeline.transcription_failures WHERE audio_file_id = $1"


async def requeue_job(
    conn: asyncpg.Connection, job: asyncpg.Record, *, trace_id: str | None
) -> None:
    """A forced AudioStored through the outbox, with the job back in 'queued', in the caller's
    transaction."""
    await conn.execute(REQUEUE_JOB, job["id"])
    await conn.execute(CLEAR_FAILURE, job["id"])
    event = audio_stored_event(job, force=True, trace_id=trace_id)
    await outbox.enqueue(conn, event, subjects.audio_stored(job["tenant_prefix"]))


class NotRequeueable(Exception):
    """The dead letter carries nothing that can be put back (foreign or aged-out message)."""


async def requeue(
    pool: asyncpg.Pool, js: JetStreamContext, row: asyncpg.Record, *, trace_id: str | None = None
) -> str:
    """Requeue one dead letter (a row of repo.GET); returns what was done."""
    event_type = row["event_type"]
    try:
        if event_type == "audio.stored":
            if row["audio_file_id"] is None:
                raise NotRequeueable("its job no longer exists")
            async with pool.acquire() as conn, conn.transaction():
                job = await conn.fetchrow(repo.JOB_FOR_REQUEUE, row["audio_file_id"])
                if job is None:
                    raise NotRequeueable("its job no longer exists")
                await requeue_job(conn, job, trace_id=trace_id)
                await conn.execute(repo.MARK_REQUEUED, row["id"])
            action = "transcription_requeued"
        elif event_type in ("transcript.ready", "transcript.failed"):
            if row["payload"] is None or not row["subject"]:
                raise NotRequeueable("the original event is no longer in the stream")
            try:
                await js.publish(
                    row["subject"],
                    bytes(row["payload"]),
                    headers={"Nats-Msg-Id": f"requeue-{uuid.uuid4()}"},
                )
            except (NatsError, OSError, TimeoutError) as exc:
                raise BusUnavailable(f"cannot publish: {exc}") from exc
            await pool.execute(repo.MARK_REQUEUED, row["id"])
            action = "event_republished"
        else:
            raise NotRequeueable(f"unknown event type {event_type!r}")
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc
    log.info("dead_letter_requeued", dead_letter_id=row["id"], action=action)
    return action
