"""Where each job's events are in the stream, so a deleted job's can be erased from it. The owner
of `published_events`.

The stream keeps events for `STREAM_MAX_AGE_DAYS` (replay), and most of a job's events carry
personal data: AudioStored its phone, prompt and storage key (which names the phone), the
results their object keys. Postgres and S3 forget a deleted job at once (libs/jobs/deletion.py);
this makes the stream forget it too:

1. `record` (the outbox relay, in the transaction that marks the rows published): the stream
   and sequence of the PubAck of every event that names a job, except `TranscriptionDeleted`
   (it carries no personal data, and is what tells consumers the job is gone). An event of a
   job that is deleted already (published late) is due at once.
2. `erase_job` (the deletion's transaction): the job's rows become due.
3. `sweep` (the ingest sweeper, any number of replicas: rows are leased with FOR UPDATE SKIP
   LOCKED): each due message is deleted from its stream with erase (its bytes overwritten), and
   its row dropped; a message already gone (aged out, erased before) counts as erased. NATS
   down: the rows stay, due again after a growing delay. Rows of live jobs are purged once the
   stream's MaxAge has taken their message.

Consumers are unaffected: a durable consumer skips deleted sequences, and an erased message is
only ever a deleted job's, whose work the consumers skip anyway (the tombstone).

Dead letters: the stream TRANSCRIBE_DEADLETTERS holds JetStream's advisories, which name a
stream, a consumer and a sequence (and the term reason, which our consumers never give), never
the event itself: there is nothing personal in it to erase.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import structlog

from libs.bus import BusUnavailable
from libs.contracts import subjects
from libs.metrics import STREAM_ERASED, STREAM_ERASURES_PENDING

log = structlog.get_logger()

MAX_RETRY_DELAY = 600.0
# The bytes before a job's id in every event that names one (msgspec's compact JSON).
JOB_FIELD = b'"audio_file_id":"'

RECORD = """
INSERT INTO media_pipeline.published_events (stream, seq, audio_file_id, erase_at)
SELECT e.stream, e.seq, e.job,
       CASE WHEN EXISTS (SELECT 1 FROM media_pipeline.audio_files a
                         WHERE a.id = e.job AND a.status = 'deleted') THEN now() END
FROM unnest($1::text[], $2::bigint[], $3::uuid[]) AS e(stream, seq, job)
ON CONFLICT (stream, seq) DO NOTHING
"""
ERASE_JOB = """
UPDATE media_pipeline.published_events SET erase_at = now()
WHERE audio_file_id = $1 AND erase_at IS NULL
"""
CLAIM_DUE = """
UPDATE media_pipeline.published_events p
SET attempts = p.attempts + 1, erase_at = now() + make_interval(secs => $2)
WHERE (p.stream, p.seq) IN (
    SELECT stream, seq FROM media_pipeline.published_events
    WHERE erase_at <= now()
    ORDER BY erase_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING p.stream, p.seq, p.attempts
"""
DROP_ERASED = """
DELETE FROM media_pipeline.published_events
WHERE (stream, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
"""
MARK_FAILED = """
UPDATE media_pipeline.published_events
SET last_error = left($4, 500), erase_at = now() + make_interval(secs => $5)
WHERE stream = $1 AND seq = $2 AND attempts = $3
"""
PURGE_AGED = """
DELETE FROM media_pipeline.published_events
WHERE published_at < now() - make_interval(days => $1)
"""
# Belt and braces for an event recorded while its job's deletion was committing (the relay did
# not see the tombstone yet, the deletion did not see the record yet): recent rows of deleted
# jobs become due. Only recent rows: the race is seconds wide, and the scan stays small.
CATCH_UP = """
UPDATE media_pipeline.published_events p SET erase_at = now()
FROM media_pipeline.audio_files a
WHERE p.published_at > now() - interval '1 hour' AND p.erase_at IS NULL
  AND a.id = p.audio_file_id AND a.status = 'deleted'
"""
PENDING = """
SELECT count(*) FROM media_pipeline.published_events WHERE erase_at IS NOT NULL
"""


class MessageEraser(Protocol):
    """What erasing needs of the bus (libs.bus.jetstream.StreamEraser): True when the message
    was erased, False when it was gone already; BusUnavailable when NATS cannot say."""

    async def erase(self, stream: str, seq: int) -> bool: ...


def job_of(payload: bytes) -> uuid.UUID | None:
    """The job an event names (its `audio_file_id`), None for an event that names none."""
    start = payload.find(JOB_FIELD)
    if start < 0:
        return None
    start += len(JOB_FIELD)
    try:
        return uuid.UUID(payload[start : start + 36].decode("ascii"))
    except ValueError:
        return None


def _kept(subject: str) -> bool:
    """TranscriptionDeleted stays in the stream: no personal data, and the news of the deletion."""
    return subject.startswith(subjects.TRANSCRIPT_DELETED + ".")


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    events: Sequence[tuple[str, bytes]],
    positions: Sequence[tuple[str, int]],
) -> int:
    """Record where each published event (subject, payload) is: `positions[i]` = (stream, seq)
    from its PubAck. Runs in the relay's transaction (and after a dead letter's requeue or a
    replay, for their copies)."""
    streams: list[str] = []
    seqs: list[int] = []
    jobs: list[uuid.UUID] = []
    for (subject, payload), (stream, seq) in zip(events, positions, strict=True):
        job = job_of(payload)
        if job is None or _kept(subject):
            continue
        streams.append(stream)
        seqs.append(seq)
        jobs.append(job)
    if jobs:
        await conn.execute(RECORD, streams, seqs, jobs)
    return len(jobs)


async def erase_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    """The job's messages are to be erased (in the deletion's transaction)."""
    if not conn.is_in_transaction():
        raise RuntimeError("published.erase_job must run inside the deletion's transaction")
    await conn.execute(ERASE_JOB, job_id)


def retry_delay(attempts: int) -> float:
    return float(min(MAX_RETRY_DELAY, 5.0 * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class ErasureRun:
    erased: int = 0
    pending: int = 0


async def erase_due(
    pool: asyncpg.Pool, eraser: MessageEraser, *, limit: int = 100, lease_seconds: float = 300.0
) -> ErasureRun:
    """One batch: lease due rows, erase their messages, drop the rows. NATS down: the rows stay,
    due again after their delay."""
    rows = await pool.fetch(CLAIM_DUE, limit, lease_seconds)
    # Concurrently: one round trip each, and NATS down costs one timeout for the batch.
    results = await asyncio.gather(
        *(eraser.erase(r["stream"], r["seq"]) for r in rows), return_exceptions=True
    )
    done: list[asyncpg.Record] = []
    failed: list[tuple[asyncpg.Record, BusUnavailable]] = []
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, BusUnavailable):
            failed.append((row, result))
        elif isinstance(result, BaseException):
            raise result
        else:
            done.append(row)
    if failed:
        await pool.executemany(
            MARK_FAILED,
            [
                (r["stream"], r["seq"], r["attempts"], str(e), retry_delay(r["attempts"]))
                for r, e in failed
            ],
        )
        log.warning("stream_erasure_pending", messages=len(failed), error=str(failed[0][1]))
    if done:
        await pool.execute(DROP_ERASED, [r["stream"] for r in done], [r["seq"] for r in done])
    return ErasureRun(erased=len(done), pending=len(rows) - len(done))


async def sweep(
    pool: asyncpg.Pool, eraser: MessageEraser | None, *, batch: int, max_age_days: int
) -> ErasureRun:
    """The sweeper's part: every due message erased (until a batch comes back short or only
    with messages that stay pending), rows older than the stream's MaxAge purged."""
    erased = pending = 0
    await pool.execute(CATCH_UP)
    while eraser is not None:
        run = await erase_due(pool, eraser, limit=batch)
        erased += run.erased
        pending += run.pending
        if run.erased + run.pending < batch or run.erased == 0:
            break
    await pool.execute(PURGE_AGED, max_age_days)
    STREAM_ERASED.inc(erased)
    STREAM_ERASURES_PENDING.set(await pending_count(pool))
    if erased or pending:
        log.info("stream_messages_erased", erased=erased, still_pending=pending)
    return ErasureRun(erased=erased, pending=pending)


async def pending_count(pool: asyncpg.Pool) -> int:
    """Messages of deleted jobs not erased yet."""
    return int(await pool.fetchval(PENDING))
