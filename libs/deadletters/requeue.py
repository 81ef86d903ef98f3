"""Putting a dead letter's work back, through the same paths as normal work.

* AudioStored (the transcriber gave up): the job is requeued like `POST /api/media/rerun/{id}`
  (libs.jobs.requeue: job row back to 'queued' and a forced AudioStored through the outbox, in
  one transaction with marking the dead letter), unguarded: the job's message is dead, so
  nothing else will ever move it.
* TranscriptReady / TranscriptionFailed / InsightsReady (the notifier or services/insights gave
  up): the original bytes published again with a NEW Nats-Msg-Id (the old one may still be
  inside the duplicate window) and the SAME event_id, so the notifier re-arms the same delivery
  and the webhook-id does not change (a TranscriptReady goes to both consumers of its subject:
  services/insights evaluates it unless it already answered that event).
"""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from nats.js import JetStreamContext

from libs import errors
from libs.bus import jetstream
from libs.deadletters import records
from libs.jobs import requeue as jobs_requeue
from libs.outbox import published

log = structlog.get_logger()

# Not guarded by status (unlike a client's rerun): the job's message is dead, so nothing else
# will ever move it.
REQUEUE_JOB = """
UPDATE media_pipeline.audio_files SET status = 'queued', last_error = NULL, updated_at = now()
WHERE id = $1
"""
CLEAR_FAILURE = "DELETE FROM media_pipeline.transcription_failures WHERE audio_file_id = $1"


class NotRequeueable(errors.Conflict):
    """The dead letter carries nothing that can be put back (foreign or aged-out message)."""

    code = "not_requeueable"


async def requeue(
    pool: asyncpg.Pool, js: JetStreamContext, row: asyncpg.Record, *, trace_id: str | None = None
) -> str:
    """Requeue one dead letter (a row of records.get); returns what was done."""
    event_type = row["event_type"]
    if event_type == "audio.stored":
        if row["audio_file_id"] is None:
            raise NotRequeueable("its job no longer exists")
        async with pool.acquire() as conn, conn.transaction():
            job = await jobs_requeue.requeue(
                conn, row["audio_file_id"], trace_id=trace_id, even_if_active=True
            )
            if job is None:
                raise NotRequeueable("its job no longer exists")
            await records.mark_requeued(conn, row["id"])
        action = "transcription_requeued"
    elif event_type in (
        "transcript.ready",
        "transcript.failed",
        "transcript.deleted",
        "insights.ready",
    ):
        if row["payload"] is None or not row["subject"]:
            raise NotRequeueable("the original event is no longer in the stream")
        position = await jetstream.publish(
            js,
            row["subject"],
            bytes(row["payload"]),
            headers={"Nats-Msg-Id": f"requeue-{uuid.uuid4()}"},
        )
        # The copy is the job's too: erased with the rest if the job is deleted.
        await published.record(pool, [(row["subject"], bytes(row["payload"]))], [position])
        await records.mark_requeued(pool, row["id"])
        action = "event_republished"
    else:
        raise NotRequeueable(f"unknown event type {event_type!r}")
    log.info("dead_letter_requeued", dead_letter_id=row["id"], action=action)
    return action
