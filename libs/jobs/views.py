"""Read-only views of jobs for their owners: the status of one job with its transcription and
failure record, and a key's jobs listed newest first (keyset pagination on (created_at, id))."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg
import msgspec

from libs.contracts import Conversation
from libs.jobs.progress import StoredProgress
from libs.redaction import RedactionRecord

_STATUS_SELECT = """
SELECT a.id, a.status, a.recording_id, a.phone, a.campaign_name, a.company, a.tenant_prefix,
       a.b2_object_key, a.url, a.created_at, a.updated_at, a.attempts, a.last_error,
       t.text, t.model, t.engine, t.language, t.duration_seconds, t.word_count,
       t.b2_transcript_json_key, t.b2_transcript_txt_key, t.b2_transcript_srt_key,
       t.b2_transcript_vtt_key, t.created_at AS completed_at, t.redaction,
       t.metadata->'conversation' AS conversation,
       f.status AS failure_status, f.error_code, f.error AS failure_error, f.attempts AS failure_attempts,
       a.deleted_at, a.deleted_by, a.audio_expires_at, a.transcript_expires_at, a.audio_removed_at,
       a.progress, a.progress_updated_at,
       (SELECT n.names FROM media_pipeline.speaker_names n WHERE n.audio_file_id = a.id)
           AS speaker_names
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
"""
STATUS = _STATUS_SELECT + "WHERE a.id = $1 AND a.api_key_id = $2"
# Newest first; the cursor is the (created_at, id) of the last row of the previous page, so a
# job inserted meanwhile (newer) never shifts a later page. Index: audio_files_key_created.
LIST = (
    _STATUS_SELECT
    + """WHERE a.api_key_id = $1
  AND ($2::text[] IS NULL OR a.status = ANY($2::text[]))
  AND ($3::timestamptz IS NULL OR a.created_at >= $3)
  AND ($4::timestamptz IS NULL OR a.created_at < $4)
  AND ($5::text IS NULL OR a.campaign_name = $5)
  AND ($6::timestamptz IS NULL OR (a.created_at, a.id) < ($6, $7::uuid))
ORDER BY a.created_at DESC, a.id DESC
LIMIT $8
"""
)


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as its owner sees it (a row of STATUS / LIST): the job, its transcription (None
    fields until completed) and its failure record. JSONB columns stay as stored."""

    id: uuid.UUID
    status: str
    recording_id: str | None
    phone: str | None
    campaign_name: str | None
    company: str | None
    tenant_prefix: str | None
    b2_object_key: str | None
    url: str | None
    created_at: datetime
    updated_at: datetime
    attempts: int
    last_error: str | None
    # The transcription.
    text: str | None
    model: str | None
    engine: str | None
    language: str | None
    duration_seconds: float | None
    word_count: int | None
    b2_transcript_json_key: str | None
    b2_transcript_txt_key: str | None
    b2_transcript_srt_key: str | None
    b2_transcript_vtt_key: str | None
    completed_at: datetime | None
    redaction: RedactionRecord | None
    conversation: Conversation | None
    # The failure record.
    failure_status: str | None
    error_code: str | None
    failure_error: str | None
    failure_attempts: int | None
    # Deletion, retention, progress.
    deleted_at: datetime | None
    deleted_by: str | None
    audio_expires_at: datetime | None
    transcript_expires_at: datetime | None
    audio_removed_at: datetime | None
    progress: StoredProgress | None
    progress_updated_at: datetime | None
    # Names given to speakers (libs/jobs/speakers.py), None when none.
    speaker_names: dict[str, str] | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> JobView:
        """The row, its JSON columns read into their types (the same as their writers use)."""
        values = {name: row[name] for name in _VIEW_FIELDS}
        for name, kind in _TYPED_JSON.items():
            if values[name] is not None:
                values[name] = msgspec.convert(values[name], kind)
        return cls(**values)

    def transcript_key(self, fmt: str) -> str | None:
        """The object key of the transcript in `fmt` (json, txt, srt, vtt), if completed."""
        if self.status != "completed":
            return None
        key: str | None = getattr(self, f"b2_transcript_{fmt}_key")
        return key


_VIEW_FIELDS = tuple(f.name for f in fields(JobView))
# JSON columns and the types their writers store: transcriptions.redaction (the transcriber),
# transcriptions.metadata's conversation (lifecycle.complete), audio_files.progress (progress).
_TYPED_JSON: dict[str, type] = {
    "redaction": RedactionRecord,
    "conversation": Conversation,
    "progress": StoredProgress,
}


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What `GET /api/media/jobs` narrows a key's jobs to; None means no condition."""

    states: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    campaign: str | None = None
    # The keyset of the last job already seen: (created_at, id).
    after: tuple[datetime, uuid.UUID] | None = None


async def status(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, api_key_id: uuid.UUID
) -> JobView | None:
    """The job with its transcription and failure columns, if `api_key_id` owns it."""
    row = await conn.fetchrow(STATUS, job_id, api_key_id)
    return None if row is None else JobView.from_row(row)


async def list_jobs(
    conn: asyncpg.Connection | asyncpg.Pool,
    api_key_id: uuid.UUID,
    where: ListFilter,
    *,
    limit: int,
) -> list[JobView]:
    """Up to `limit` of the key's jobs matching `where`, newest first."""
    after_at, after_id = where.after if where.after else (None, None)
    rows = await conn.fetch(
        LIST,
        api_key_id,
        list(where.states) if where.states is not None else None,
        where.since,
        where.until,
        where.campaign,
        after_at,
        after_id,
        limit,
    )
    return [JobView.from_row(r) for r in rows]
