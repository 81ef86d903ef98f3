"""The job row (`media_pipeline.audio_files`) as a typed record, its loader, and the one mapping
from a job to the AudioStored event that announces it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from libs.contracts import AudioStored, new_event_id, utcnow

# Every column of the record, for queries that load a Job (aliased `a`).
JOB_COLUMNS = """
a.id, a.api_key_id, a.tenant_prefix, a.phone, a.campaign_name, a.campaign_id, a.company,
a.recording_id, a.url, a.bucket, a.b2_object_key, a.content_type, a.size_bytes, a.sha256,
a.callback_url, a.model, a.language, a.timestamps, a.status, a.attempts, a.last_error,
a.trace_id, a.created_at, a.updated_at, a.idempotency_key, a.request_sha256, a.transcript_prefix,
a.prompt, a.multichannel, a.channel_roles, a.redact
"""
LOAD = "SELECT" + JOB_COLUMNS + "FROM media_pipeline.audio_files a WHERE a.id = $1"
LOAD_FOR_UPDATE = LOAD + " FOR UPDATE"
# A job as its owner sees it: another key's job does not exist for them.
LOAD_FOR_KEY = LOAD + " AND a.api_key_id = $2"


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    api_key_id: uuid.UUID
    tenant_prefix: str
    phone: str | None
    campaign_name: str
    campaign_id: str | None
    company: str | None
    recording_id: str | None
    url: str | None
    bucket: str
    object_key: str
    content_type: str
    size: int
    sha256: str
    callback_url: str | None
    model: str | None
    language: str | None
    timestamps: str
    status: str
    attempts: int
    last_error: str | None
    trace_id: str | None
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    # sha256 of the canonical request (services/ingest/submission.py), kept for jobs submitted
    # with an Idempotency-Key: the key may only be replayed with the same request.
    request_sha256: str | None = None
    # '' for the reference transcript layout, else the prefix above `<campaign>/transcriptions/`.
    transcript_prefix: str = ""
    # Vocabulary or context for the model, given at submission.
    prompt: str | None = None
    # "auto" | "true" | "false" (migration 0011); the role of channel k, None for the key's map.
    multichannel: str = "false"
    channel_roles: tuple[str, ...] | None = None
    # The job's redaction policy (libs.redaction.Policy.spec; '' for none), chosen at submit.
    redact: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Job:
        return cls(
            id=row["id"],
            api_key_id=row["api_key_id"],
            tenant_prefix=row["tenant_prefix"],
            phone=row["phone"],
            campaign_name=row["campaign_name"],
            campaign_id=row["campaign_id"],
            company=row["company"],
            recording_id=row["recording_id"],
            url=row["url"],
            bucket=row["bucket"],
            object_key=row["b2_object_key"],
            content_type=row["content_type"],
            size=int(row["size_bytes"]),
            sha256=row["sha256"],
            callback_url=row["callback_url"],
            model=row["model"],
            language=row["language"],
            timestamps=row["timestamps"],
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            trace_id=row["trace_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            idempotency_key=row["idempotency_key"],
            request_sha256=row["request_sha256"],
            transcript_prefix=row["transcript_prefix"],
            prompt=row["prompt"],
            multichannel=row["multichannel"],
            channel_roles=None if row["channel_roles"] is None else tuple(row["channel_roles"]),
            redact=row["redact"],
        )


class StoredAudio(Protocol):
    """What an AudioStored event says of a job: a loaded `Job` or a `NewJob` being inserted."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def tenant_prefix(self) -> str: ...
    @property
    def campaign_name(self) -> str: ...
    @property
    def object_key(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def recording_id(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def timestamps(self) -> str: ...
    @property
    def prompt(self) -> str | None: ...
    @property
    def callback_url(self) -> str | None: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def multichannel(self) -> str: ...
    @property
    def channel_roles(self) -> tuple[str, ...] | None: ...
    @property
    def redact(self) -> str: ...


def audio_stored_event(
    job: StoredAudio, *, force: bool = False, trace_id: str | None = None
) -> AudioStored:
    """The one job -> AudioStored mapping (new submissions, reruns, requeues)."""
    return AudioStored(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        trace_id=trace_id or job.trace_id,
        audio_file_id=str(job.id),
        tenant=job.tenant_prefix,
        campaign=job.campaign_name,
        storage_key=job.object_key,
        content_type=job.content_type,
        size=job.size,
        sha256=job.sha256,
        phone=job.phone,
        recording_id=job.recording_id,
        model=job.model,
        language=job.language,
        timestamps=job.timestamps,
        prompt=job.prompt,
        callback_url=job.callback_url,
        force=force,
        multichannel=job.multichannel,
        channel_roles=None if job.channel_roles is None else list(job.channel_roles),
        redact=job.redact,
    )


async def load(
    conn: asyncpg.Connection | asyncpg.Pool,
    job_id: uuid.UUID,
    *,
    api_key_id: uuid.UUID | None = None,
) -> Job | None:
    """The job, or None; with `api_key_id`, only if that key owns it."""
    if api_key_id is None:
        row = await conn.fetchrow(LOAD, job_id)
    else:
        row = await conn.fetchrow(LOAD_FOR_KEY, job_id, api_key_id)
    return None if row is None else Job.from_row(row)
