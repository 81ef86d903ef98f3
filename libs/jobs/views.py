"""Read-only views of jobs for their owners: the status of one job with its transcription and
failure record, and a key's jobs listed newest first (keyset pagination on (created_at, id))."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

_STATUS_SELECT = """
SELECT a.id, a.status, a.recording_id, a.phone, a.campaign_name, a.company, a.tenant_prefix,
       a.b2_object_key, a.url, a.created_at, a.updated_at, a.attempts, a.last_error,
       t.text, t.model, t.engine, t.language, t.duration_seconds, t.word_count,
       t.b2_transcript_json_key, t.b2_transcript_txt_key, t.b2_transcript_srt_key,
       t.b2_transcript_vtt_key, t.created_at AS completed_at, t.redaction,
       t.metadata->'conversation' AS conversation,
       f.status AS failure_status, f.error_code, f.error AS failure_error, f.attempts AS failure_attempts,
       a.deleted_at, a.deleted_by, a.audio_expires_at, a.transcript_expires_at, a.audio_removed_at,
       a.progress, a.progress_updated_at
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
) -> asyncpg.Record | None:
    """The job with its transcription and failure columns, if `api_key_id` owns it."""
    row: asyncpg.Record | None = await conn.fetchrow(STATUS, job_id, api_key_id)
    return row


async def list_jobs(
    conn: asyncpg.Connection | asyncpg.Pool,
    api_key_id: uuid.UUID,
    where: ListFilter,
    *,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` of the key's jobs matching `where`, newest first (status rows)."""
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
    return list(rows)
