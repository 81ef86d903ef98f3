"""A job's transcription lifecycle, as the transcriber moves it: processing, completed (with its
transcription row), transient and permanent failures, resumable chunks. Each state change
commits with its event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from libs import outbox, search
from libs.contracts import (
    AudioStored,
    RedactionSummary,
    TranscriptionFailed,
    TranscriptKeys,
    TranscriptReady,
    new_event_id,
    subjects,
    utcnow,
)
from libs.db import rows_affected
from libs.jobs import deletion
from libs.redaction import RedactionRecord
from libs.transcript import Transcript

LOAD_JOB = """
SELECT a.id, a.tenant_prefix, a.campaign_name, a.recording_id, a.b2_object_key, a.status,
       a.attempts, a.trace_id, a.transcript_prefix, a.redact,
       (t.audio_file_id IS NOT NULL) AS has_transcript,
       f.status AS failure_status,
       GREATEST(EXTRACT(EPOCH FROM f.cooldown_until - now()), 0)::float8 AS cooldown_left
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
WHERE a.id = $1
"""
MARK_PROCESSING = """
UPDATE media_pipeline.audio_files
SET status = 'processing', attempts = attempts + 1, updated_at = now()
WHERE id = $1 AND status <> 'deleted' AND (status <> 'completed' OR $2)
"""
# The whole completion in ONE statement (one transaction, one round trip): guarded so that two
# racing workers (or a redelivery) complete a job, and announce it, once; everything after the
# guard hangs off its RETURNING, so nothing is written when another worker got there first.
# $1 job id, $2 force, $3 the transcription row (a `CompletedTranscription`, read by column
# name), $4-$7 the outbox row (outbox.event_row).
COMPLETE_WITH_EVENT = """
WITH done AS (
    UPDATE media_pipeline.audio_files
    SET status = 'completed', last_error = NULL, updated_at = now()
    WHERE id = $1 AND status <> 'deleted' AND (status <> 'completed' OR $2)
    RETURNING id
), fields AS (
    SELECT * FROM jsonb_populate_record(NULL::media_pipeline.transcriptions, $3::jsonb)
), transcription AS (
    INSERT INTO media_pipeline.transcriptions (
        audio_file_id, status, model, engine, language, duration_seconds, text, word_count,
        b2_transcript_json_key, b2_transcript_txt_key, b2_transcript_srt_key,
        b2_transcript_vtt_key, metadata, raw_response, redaction)
    SELECT done.id, 'completed', f.model, f.engine, f.language, f.duration_seconds, f.text,
           f.word_count, f.b2_transcript_json_key, f.b2_transcript_txt_key,
           f.b2_transcript_srt_key, f.b2_transcript_vtt_key, f.metadata, f.raw_response,
           f.redaction
    FROM done, fields f
    ON CONFLICT (audio_file_id) DO UPDATE SET
        status = 'completed', model = EXCLUDED.model, engine = EXCLUDED.engine,
        language = EXCLUDED.language, duration_seconds = EXCLUDED.duration_seconds,
        text = EXCLUDED.text, word_count = EXCLUDED.word_count,
        b2_transcript_json_key = EXCLUDED.b2_transcript_json_key,
        b2_transcript_txt_key = EXCLUDED.b2_transcript_txt_key,
        b2_transcript_srt_key = EXCLUDED.b2_transcript_srt_key,
        b2_transcript_vtt_key = EXCLUDED.b2_transcript_vtt_key,
        metadata = EXCLUDED.metadata, raw_response = EXCLUDED.raw_response,
        redaction = EXCLUDED.redaction, updated_at = now()
    RETURNING 1
), cleared AS (
    DELETE FROM media_pipeline.transcription_failures
    WHERE audio_file_id IN (SELECT id FROM done)
), chunks AS (
    DELETE FROM media_pipeline.transcription_chunks
    WHERE audio_file_id IN (SELECT id FROM done)
), event AS (
    INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
    SELECT $4, $5, $6, $7 FROM done
    RETURNING 1
)
SELECT (SELECT count(*) FROM done) + (SELECT count(*) FROM transcription)
    + (SELECT count(*) FROM event)
"""


class CompletedTranscription(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The `transcriptions` row of a completed job, as COMPLETE_WITH_EVENT takes it: each field
    is the column of the same name (read with jsonb_populate_record); a field left None is
    left out, so the column is NULL."""

    model: str
    engine: str
    language: str | None = None
    duration_seconds: float | None = None
    text: str
    word_count: int
    b2_transcript_json_key: str
    b2_transcript_txt_key: str
    b2_transcript_srt_key: str | None = None
    b2_transcript_vtt_key: str | None = None
    metadata: dict[str, Any]
    raw_response: Any = None
    redaction: RedactionRecord | None = None

    @classmethod
    def of(
        cls,
        transcript: Transcript,
        keys: TranscriptKeys,
        metadata: dict[str, Any],
        *,
        raw_response: Any,
        redaction: RedactionRecord | None,
    ) -> CompletedTranscription:
        return cls(
            model=transcript.model,
            engine=transcript.engine,
            language=transcript.language,
            duration_seconds=transcript.duration,
            text=transcript.text,
            word_count=transcript.word_count,
            b2_transcript_json_key=keys.json,
            b2_transcript_txt_key=keys.txt,
            b2_transcript_srt_key=keys.srt,
            b2_transcript_vtt_key=keys.vtt,
            metadata=metadata,
            raw_response=raw_response,
            redaction=redaction,
        )


def _stored_metadata(
    transcript: Transcript, store_raw_response: bool
) -> tuple[dict[str, Any], Any]:
    """`transcriptions.metadata` (the engine's metadata, counts, the conversation) and the raw
    engine response kept beside it (None unless `store_raw_response`)."""
    engine = transcript.engine_metadata
    raw = engine.raw_response if store_raw_response else None
    metadata: dict[str, Any] = msgspec.to_builtins(
        msgspec.structs.replace(engine, raw_response=None)
    )
    metadata.update(segments=len(transcript.segments), has_words=transcript.words is not None)
    if transcript.conversation is not None:
        # Stored with the transcription (the status answer reads it) and sent with the event.
        metadata["conversation"] = msgspec.to_builtins(transcript.conversation)
    return metadata, raw


RECORD_FAILURE = """
INSERT INTO media_pipeline.transcription_failures
    (audio_file_id, status, error_code, error, attempts, cooldown_until)
VALUES ($1, $2, $3, left($4, 2000), 1, now() + make_interval(secs => $5))
ON CONFLICT (audio_file_id) DO UPDATE SET
    status = EXCLUDED.status, error_code = EXCLUDED.error_code, error = EXCLUDED.error,
    attempts = media_pipeline.transcription_failures.attempts + 1,
    last_failed_at = now(), cooldown_until = EXCLUDED.cooldown_until
RETURNING attempts
"""
MARK_FAILED = """
UPDATE media_pipeline.audio_files SET status = 'failed', last_error = left($2, 2000), updated_at = now()
WHERE id = $1 AND status NOT IN ('completed', 'deleted')
"""
LOAD_CHUNKS = """
SELECT chunk_index, start_sample, end_sample, request_key, transcript
FROM media_pipeline.transcription_chunks WHERE audio_file_id = $1
"""
SAVE_CHUNK = """
INSERT INTO media_pipeline.transcription_chunks
    (audio_file_id, chunk_index, start_sample, end_sample, request_key, transcript)
SELECT $1, $2, $3, $4, $5, $6
WHERE EXISTS (
    -- A deleted job keeps no transcript, not even a chunk's.
    SELECT 1 FROM media_pipeline.audio_files WHERE id = $1 AND status <> 'deleted'
)
ON CONFLICT (audio_file_id, chunk_index) DO UPDATE SET
    start_sample = EXCLUDED.start_sample, end_sample = EXCLUDED.end_sample,
    request_key = EXCLUDED.request_key, transcript = EXCLUDED.transcript, created_at = now()
"""
IS_DELETED = """
SELECT EXISTS (SELECT 1 FROM media_pipeline.audio_files WHERE id = $1 AND status = 'deleted')
"""
# Audio redaction replaced the stored audio: the row points to the new object ($5) and
# describes what it holds; guarded on the key it replaced, so a deleted job is left alone.
RECORD_AUDIO_REPLACED = """
UPDATE media_pipeline.audio_files
SET content_type = $2, size_bytes = $3, sha256 = $4, b2_object_key = $5, updated_at = now()
WHERE id = $1 AND b2_object_key = $6 AND status <> 'deleted'
"""
AUDIO_REPLACED_BY = "transcriber"
MARK_QUEUED_AFTER_ERROR = """
UPDATE media_pipeline.audio_files SET status = 'queued', last_error = left($2, 2000), updated_at = now()
WHERE id = $1 AND status = 'processing'
"""


@dataclass(frozen=True, slots=True)
class ProcessingJob:
    id: uuid.UUID
    tenant_prefix: str
    campaign_name: str
    recording_id: str | None
    object_key: str
    status: str
    has_transcript: bool
    failure_status: str | None
    trace_id: str | None
    # Seconds until a transient failure's cooldown ends (0 when none is running).
    cooldown_left: float = 0.0
    # '' for the reference transcript layout, else the prefix transcripts go under (libs/layout).
    transcript_prefix: str = ""
    # The job's redaction policy (libs.redaction.Policy.spec; '' for none).
    redact: str = ""


@dataclass(frozen=True, slots=True)
class StoredChunk:
    index: int
    start_sample: int
    end_sample: int
    request_key: str
    transcript: Transcript


async def load_job(pool: asyncpg.Pool, audio_file_id: str) -> ProcessingJob | None:
    try:
        job_id = uuid.UUID(audio_file_id)
    except ValueError:
        return None
    row = await pool.fetchrow(LOAD_JOB, job_id)
    if row is None:
        return None
    return ProcessingJob(
        id=row["id"],
        tenant_prefix=row["tenant_prefix"],
        campaign_name=row["campaign_name"],
        recording_id=row["recording_id"],
        object_key=row["b2_object_key"],
        status=row["status"],
        has_transcript=row["has_transcript"],
        failure_status=row["failure_status"],
        trace_id=row["trace_id"],
        cooldown_left=float(row["cooldown_left"] or 0.0),
        transcript_prefix=row["transcript_prefix"],
        redact=row["redact"],
    )


async def load_chunks(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[int, StoredChunk]:
    rows = await pool.fetch(LOAD_CHUNKS, job_id)
    return {
        row["chunk_index"]: StoredChunk(
            index=row["chunk_index"],
            start_sample=row["start_sample"],
            end_sample=row["end_sample"],
            request_key=row["request_key"],
            transcript=msgspec.convert(row["transcript"], Transcript),
        )
        for row in rows
    }


async def save_chunk(pool: asyncpg.Pool, job_id: uuid.UUID, chunk: StoredChunk) -> None:
    await pool.execute(
        SAVE_CHUNK,
        job_id,
        chunk.index,
        chunk.start_sample,
        chunk.end_sample,
        chunk.request_key,
        msgspec.to_builtins(chunk.transcript),
    )


async def republish(pool: asyncpg.Pool, job: ProcessingJob, event: AudioStored) -> AudioStored:
    """Publish a fresh copy of `event` (new event id, so JetStream counts deliveries from
    zero) through the outbox; for work that must outlive its message's MaxDeliver."""
    fresh = msgspec.structs.replace(event, event_id=new_event_id(), occurred_at=utcnow())
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, fresh, subjects.audio_stored(job.tenant_prefix))
    return fresh


async def mark_processing(pool: asyncpg.Pool, job: ProcessingJob, *, force: bool) -> bool:
    result = await pool.execute(MARK_PROCESSING, job.id, force)
    return rows_affected(result) == 1


async def complete(
    pool: asyncpg.Pool,
    job: ProcessingJob,
    transcript: Transcript,
    keys: TranscriptKeys,
    *,
    force: bool,
    trace_id: str | None,
    store_raw_response: bool = True,
    redaction: RedactionRecord | None = None,
    summary: RedactionSummary | None = None,
) -> TranscriptReady | None:
    """Upsert the transcription and announce it; None when another worker already completed it.

    With a redaction policy the caller passes the redacted transcript, the redaction record
    (`redaction`: class, counts, spans; stored in `transcriptions.redaction`) and its summary
    for the event."""
    metadata, raw = _stored_metadata(transcript, store_raw_response)
    event = TranscriptReady(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        trace_id=trace_id,
        audio_file_id=str(job.id),
        tenant=job.tenant_prefix,
        model=transcript.model,
        engine=transcript.engine,
        language=transcript.language,
        duration=transcript.duration,
        keys=keys,
        word_count=transcript.word_count,
        recording_id=job.recording_id,
        conversation=transcript.conversation,
        redaction=summary,
    )
    row = CompletedTranscription.of(
        transcript, keys, metadata, raw_response=raw, redaction=redaction
    )
    async with pool.acquire() as conn, conn.transaction():
        written = await conn.fetchval(
            COMPLETE_WITH_EVENT,
            job.id,
            force,
            msgspec.to_builtins(row),
            *outbox.event_row(event, subjects.transcript_ready(job.tenant_prefix)),
        )
        if written == 3:
            # The search index (libs.search): the call's rows commit with its completion.
            await search.write(conn, job.id, transcript)
    if written == 0:
        # Completed elsewhere, or deleted meanwhile: then the transcripts just uploaded must go
        # too (a no-op for a job that has no deletion).
        await deletion.rearm(
            pool, job.id, [k for k in (keys.json, keys.txt, keys.srt, keys.vtt) if k]
        )
        return None
    if written != 3:
        raise RuntimeError(f"completing {job.id} wrote {written} of 3 rows")
    return event


async def record_transient(
    pool: asyncpg.Pool, job: ProcessingJob, *, code: str, detail: str, cooldown_seconds: float
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        attempts = await conn.fetchval(
            RECORD_FAILURE, job.id, "transient", code, detail, cooldown_seconds
        )
        await conn.execute(MARK_QUEUED_AFTER_ERROR, job.id, f"{code}: {detail}")
    return int(attempts)


async def fail(
    pool: asyncpg.Pool, job: ProcessingJob, *, code: str, detail: str, trace_id: str | None
) -> TranscriptionFailed | None:
    """Record a permanent failure and announce it (once)."""
    async with pool.acquire() as conn, conn.transaction():
        attempts = await conn.fetchval(RECORD_FAILURE, job.id, "permanent", code, detail, 0.0)
        updated = await conn.execute(MARK_FAILED, job.id, f"{code}: {detail}")
        if rows_affected(updated) != 1:
            return None
        event = TranscriptionFailed(
            event_id=new_event_id(),
            occurred_at=utcnow(),
            trace_id=trace_id,
            audio_file_id=str(job.id),
            tenant=job.tenant_prefix,
            error_code=code,
            detail=detail[:2000],
            attempts=int(attempts),
            permanent=True,
            recording_id=job.recording_id,
        )
        await outbox.enqueue(conn, event, subjects.transcript_failed(job.tenant_prefix))
    return event


@dataclass(frozen=True, slots=True)
class StoredAudio:
    """An audio object as stored: where, and what it holds."""

    key: str
    content_type: str
    size: int
    sha256: str


async def record_audio_replaced(
    pool: asyncpg.Pool,
    store: deletion.ObjectDeleter,
    job_id: uuid.UUID,
    old_key: str,
    new: StoredAudio,
) -> bool:
    """The job's audio was replaced by `new` (its redacted copy, already stored): in one
    transaction the row moves to the new key and describes what it holds, and the original
    object (another key) is recorded for removal; then it is removed (the finisher retries if
    storage is down). A job deleted meanwhile keeps nothing: its deletion takes the new object
    too. Returns whether the row now points to `new`."""
    async with pool.acquire() as conn, conn.transaction():
        status: str = await conn.execute(
            RECORD_AUDIO_REPLACED, job_id, new.content_type, new.size, new.sha256, new.key, old_key
        )
        moved = status.endswith(" 1")
        if moved and new.key != old_key:
            await conn.execute(
                deletion.INSERT_DELETION,
                job_id,
                AUDIO_REPLACED_BY,
                "audio_replaced",
                [old_key],
                deletion.INLINE_LEASE_SECONDS,
            )
        elif not moved:
            await deletion.rearm(conn, job_id, [new.key])
    if new.key != old_key or not moved:
        await deletion.finish(pool, store, job_id)
    return moved


async def is_deleted(pool: asyncpg.Pool, job_id: uuid.UUID) -> bool:
    """The job was deleted (its audio may be gone: not a failure, nothing to announce)."""
    return bool(await pool.fetchval(IS_DELETED, job_id))
