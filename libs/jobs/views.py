"""Read-only views of jobs for their owners: the status of one job with its transcription and
failure record."""

from __future__ import annotations

import uuid

import asyncpg

STATUS = """
SELECT a.id, a.status, a.recording_id, a.phone, a.campaign_name, a.company, a.tenant_prefix,
       a.b2_object_key, a.url, a.created_at, a.updated_at, a.attempts, a.last_error,
       t.text, t.model, t.engine, t.language, t.duration_seconds, t.word_count,
       t.b2_transcript_json_key, t.b2_transcript_txt_key, t.b2_transcript_srt_key,
       t.b2_transcript_vtt_key, t.created_at AS completed_at, t.redaction,
       f.status AS failure_status, f.error_code, f.error AS failure_error, f.attempts AS failure_attempts
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
WHERE a.id = $1 AND a.api_key_id = $2
"""


async def status(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, api_key_id: uuid.UUID
) -> asyncpg.Record | None:
    """The job with its transcription and failure columns, if `api_key_id` owns it."""
    row: asyncpg.Record | None = await conn.fetchrow(STATUS, job_id, api_key_id)
    return row
