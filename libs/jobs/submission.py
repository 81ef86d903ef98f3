"""What a submission writes: the job row and its AudioStored event, in one statement that also
releases the submission's claims; and the lookups that find an existing job for a duplicate."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs import outbox
from libs.contracts import subjects
from libs.jobs import claims
from libs.jobs.record import JOB_COLUMNS, Job, audio_stored_event

# The job row and the AudioStored event (the row outbox.enqueue writes), written by one statement together with
# the release of the submission's claims; no row at all if the claims are gone (swept).
INSERT_JOB_WITH_EVENT = """
WITH released AS (
    DELETE FROM media_pipeline.ingest_claims WHERE audio_file_id = $1 RETURNING 1
), job AS (
    INSERT INTO media_pipeline.audio_files (
        id, api_key_id, tenant_prefix, phone, campaign_name, campaign_id, company, recording_id,
        url, url_sha1, idempotency_key, started, stopped, bucket, b2_object_key, content_type,
        size_bytes, sha256, source_table, source_row_id, callback_url, model, language,
        timestamps, trace_id, transcript_prefix, request_sha256, prompt, multichannel,
        channel_roles, redact, audio_expires_at, transcript_expires_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
           $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31,
           now() + make_interval(secs => $36::float8), now() + make_interval(secs => $37::float8)
    WHERE EXISTS (SELECT 1 FROM released)
    RETURNING id
), event AS (
    INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
    SELECT $32, $33, $34, $35 FROM job
    RETURNING 1
)
SELECT count(*) FROM event
"""
FIND_BY_URL = (
    "SELECT"
    + JOB_COLUMNS
    + """FROM media_pipeline.audio_files a
WHERE a.api_key_id = $1 AND a.tenant_prefix = $2 AND a.url_sha1 = $3"""
)
FIND_BY_IDEMPOTENCY_KEY = (
    "SELECT"
    + JOB_COLUMNS
    + "FROM media_pipeline.audio_files a WHERE a.api_key_id = $1 AND a.idempotency_key = $2"
)


@dataclass(frozen=True, slots=True)
class NewJob:
    id: uuid.UUID
    api_key_id: str
    tenant_prefix: str
    phone: str | None
    campaign_name: str
    campaign_id: str | None
    company: str | None
    recording_id: str | None
    url: str | None
    url_sha1: str | None
    idempotency_key: str | None
    started: datetime | None
    stopped: datetime | None
    bucket: str
    object_key: str
    content_type: str
    size: int
    sha256: str
    source_table: str | None
    source_row_id: int | None
    callback_url: str | None
    model: str | None
    language: str | None
    timestamps: str
    trace_id: str | None
    transcript_prefix: str = ""
    request_sha256: str | None = None
    prompt: str | None = None
    # Retention (seconds from now; None: kept forever): the audio object, the whole job.
    audio_ttl_seconds: int | None = None
    transcript_ttl_seconds: int | None = None
    multichannel: str = "auto"
    # The role of channel k as the job will use it (the job's own map, else its key's); None
    # leaves the transcriber's default.
    channel_roles: tuple[str, ...] | None = None
    redact: str = ""


async def insert_job(conn: asyncpg.Connection | asyncpg.Pool, job: NewJob) -> None:
    """The job row, its AudioStored outbox event and the release of the submission's claims, in
    ONE statement, so in one transaction (the outbox guarantee) and one round trip: with the
    object already stored, this commit is what makes a submission a job. Raises ClaimLost if the
    sweep took the claims (nothing is written then), libs.db.DuplicateRow on a duplicate."""
    event = audio_stored_event(job)
    inserted = await conn.fetchval(
        INSERT_JOB_WITH_EVENT,
        job.id,
        uuid.UUID(job.api_key_id),
        job.tenant_prefix,
        job.phone,
        job.campaign_name,
        job.campaign_id,
        job.company,
        job.recording_id,
        job.url,
        job.url_sha1,
        job.idempotency_key,
        job.started,
        job.stopped,
        job.bucket,
        job.object_key,
        job.content_type,
        job.size,
        job.sha256,
        job.source_table,
        job.source_row_id,
        job.callback_url,
        job.model,
        job.language,
        job.timestamps,
        job.trace_id,
        job.transcript_prefix,
        job.request_sha256,
        job.prompt,
        job.multichannel,
        None if job.channel_roles is None else list(job.channel_roles),
        job.redact,
        *outbox.event_row(event, subjects.audio_stored(job.tenant_prefix)),
        job.audio_ttl_seconds,
        job.transcript_ttl_seconds,
    )
    if not inserted:
        raise claims.ClaimLost(f"claim of {job.id} expired before the job was recorded")


async def find_existing(
    conn: asyncpg.Connection | asyncpg.Pool,
    api_key_id: uuid.UUID,
    *,
    prefix: str,
    url_sha1: str | None,
    idempotency_key: str | None,
) -> Job | None:
    """The job an identical submission made: same Idempotency-Key first, then same tenant
    prefix + URL."""
    if idempotency_key is not None:
        row = await conn.fetchrow(FIND_BY_IDEMPOTENCY_KEY, api_key_id, idempotency_key)
        if row is not None:
            return Job.from_row(row)
    if url_sha1 is not None:
        row = await conn.fetchrow(FIND_BY_URL, api_key_id, prefix, url_sha1)
        if row is not None:
            return Job.from_row(row)
    return None
