"""The reference status shape: {status: pending|completed|failed, transcript, metadata}, built
from the job's view (libs.jobs.views.JobView) as the typed `bodies.Status`."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.jobs.views import JobView
from libs.layout import redacted_audio_key
from libs.redaction import RedactionRecord
from services.ingest import bodies

UNSET = msgspec.UNSET


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def status_body(row: JobView) -> bodies.Status:
    state = row.status
    public = state if state in ("completed", "failed", "deleted") else "pending"
    metadata = bodies.StatusMetadata(
        audio_file_id=str(row.id),
        state=state,  # type: ignore[arg-type]  # the column's check constraint: a JobState
        recording_id=row.recording_id,
        phone=row.phone,
        campaign=row.campaign_name,
        company=row.company,
        b2_prefix=row.tenant_prefix,
        b2_key=row.b2_object_key,
        attempts=row.attempts,
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
        progress=_progress(row),
    )
    if state != "deleted":
        # Retention: when the audio goes, when the whole job goes, when the audio went.
        metadata = msgspec.structs.replace(
            metadata,
            audio_expires_at=_iso(row.audio_expires_at) or UNSET,
            transcript_expires_at=_iso(row.transcript_expires_at) or UNSET,
            audio_removed_at=_iso(row.audio_removed_at) or UNSET,
        )
    transcript = None
    if public == "completed" and row.text is not None:
        transcript = row.text
        metadata = _completed(metadata, row)
    if public == "deleted":
        # The tombstone: ids and timestamps stay, the personal content is gone.
        metadata = msgspec.structs.replace(
            metadata, deleted_at=_iso(row.deleted_at), deleted_by=row.deleted_by
        )
    if public == "failed":
        error = bodies.JobError(
            code=row.error_code,
            detail=row.failure_error or row.last_error,
            permanent=row.failure_status == "permanent",
        )
        metadata = msgspec.structs.replace(metadata, error=error)
    elif row.failure_status == "transient":
        # Still pending, but the last attempt failed: say so, so callers know it is retrying.
        last = bodies.JobError(code=row.error_code, detail=row.failure_error)
        metadata = msgspec.structs.replace(metadata, last_error=last)
    return bodies.Status(status=public, transcript=transcript, metadata=metadata)  # type: ignore[arg-type]


def _completed(metadata: bodies.StatusMetadata, row: JobView) -> bodies.StatusMetadata:
    """The transcription's facts, its conversation and what was redacted."""
    return msgspec.structs.replace(
        metadata,
        model=row.model,
        engine=row.engine,
        language=row.language,
        duration=row.duration_seconds,
        word_count=row.word_count,
        b2_transcript_json_key=row.b2_transcript_json_key,
        b2_transcript_txt_key=row.b2_transcript_txt_key,
        b2_transcript_srt_key=row.b2_transcript_srt_key,
        b2_transcript_vtt_key=row.b2_transcript_vtt_key,
        completed_at=_iso(row.completed_at),
        conversation=(UNSET if row.conversation is None else row.conversation),
        redaction=(
            UNSET if row.redaction is None else _redaction(row.redaction, row.b2_object_key)
        ),
        speaker_names=row.speaker_names or UNSET,
    )


def _redaction(record: RedactionRecord, audio_key: str | None) -> bodies.Redaction:
    """The stored record has time spans too; the status shows the counts and what happened to
    the audio."""
    body = bodies.Redaction(policy=record.policy, counts=record.counts, total=record.total)
    if record.audio is not None:
        body = msgspec.structs.replace(
            body,
            audio=record.audio.status,
            # From the job's audio key: the record holds no key (keys name the phone).
            audio_key=(
                redacted_audio_key(audio_key)
                if record.audio.status == "redacted" and audio_key
                else UNSET
            ),
            audio_detail=record.audio.reason or UNSET,
        )
    return body


def _progress(row: JobView) -> bodies.Progress | msgspec.UnsetType:
    """Where the job is: `queued`, `transcribing` (chunk n of m for long recordings, as the
    transcriber last reported), `rendering`, `completed` or `failed`; none for a deleted job."""
    state = row.status
    updated = row.updated_at
    if state == "deleted":
        return UNSET
    if state == "processing":
        stored = row.progress
        if stored is not None and stored.stage:
            at = row.progress_updated_at or updated
            return bodies.Progress(
                stage=stored.stage,
                fraction=stored.fraction,
                updated_at=at.isoformat(),
                chunk=UNSET if stored.chunk is None else stored.chunk,
                chunks=UNSET if stored.chunks is None else stored.chunks,
                channel=UNSET if stored.channel is None else stored.channel,
            )
        return bodies.Progress(stage="transcribing", fraction=None, updated_at=updated.isoformat())
    fraction = {"queued": 0.0, "completed": 1.0}.get(state)
    return bodies.Progress(stage=state, fraction=fraction, updated_at=updated.isoformat())
