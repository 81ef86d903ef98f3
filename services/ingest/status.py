"""The reference status shape: {status: pending|completed|failed, transcript, metadata}."""

from __future__ import annotations

from typing import Any

from libs.jobs.views import JobView


def status_body(row: JobView) -> dict[str, Any]:
    state = row.status
    public = state if state in ("completed", "failed", "deleted") else "pending"
    metadata: dict[str, Any] = {
        "audio_file_id": str(row.id),
        "state": state,
        "recording_id": row.recording_id,
        "phone": row.phone,
        "campaign": row.campaign_name,
        "company": row.company,
        "b2_prefix": row.tenant_prefix,
        "b2_key": row.b2_object_key,
        "attempts": row.attempts,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    # Retention: when the audio goes, when the whole job goes, when the audio went.
    retention = {
        "audio_expires_at": row.audio_expires_at,
        "transcript_expires_at": row.transcript_expires_at,
        "audio_removed_at": row.audio_removed_at,
    }
    for name, at in retention.items():
        if at is not None and state != "deleted":
            metadata[name] = at.isoformat()
    progress = _progress(row)
    if progress is not None:
        metadata["progress"] = progress
    transcript = None
    if public == "completed" and row.text is not None:
        transcript = row.text
        metadata.update(
            model=row.model,
            engine=row.engine,
            language=row.language,
            duration=row.duration_seconds,
            word_count=row.word_count,
            b2_transcript_json_key=row.b2_transcript_json_key,
            b2_transcript_txt_key=row.b2_transcript_txt_key,
            b2_transcript_srt_key=row.b2_transcript_srt_key,
            b2_transcript_vtt_key=row.b2_transcript_vtt_key,
            completed_at=row.completed_at.isoformat() if row.completed_at else None,
        )
        if row.conversation is not None:
            metadata["conversation"] = row.conversation
        redaction = row.redaction
        if redaction is not None:
            # The stored record has time spans too; the status shows the counts.
            counts = redaction.get("counts", {})
            metadata["redaction"] = {
                "policy": redaction.get("policy", ""),
                "counts": counts,
                "total": sum(counts.values()),
            }
            audio = redaction.get("audio")
            if audio:
                metadata["redaction"]["audio"] = audio.get("status")
                if audio.get("key"):
                    metadata["redaction"]["audio_key"] = audio["key"]
                if audio.get("reason"):
                    metadata["redaction"]["audio_detail"] = audio["reason"]
    if public == "deleted":
        # The tombstone: ids and timestamps stay, the personal content is gone.
        metadata.update(
            deleted_at=row.deleted_at.isoformat() if row.deleted_at else None,
            deleted_by=row.deleted_by,
        )
    if public == "failed":
        metadata["error"] = {
            "code": row.error_code,
            "detail": row.failure_error or row.last_error,
            "permanent": row.failure_status == "permanent",
        }
    elif row.failure_status == "transient":
        # Still pending, but the last attempt failed: say so, so callers know it is retrying.
        metadata["last_error"] = {"code": row.error_code, "detail": row.failure_error}
    return {"status": public, "transcript": transcript, "metadata": metadata}


def _progress(row: JobView) -> dict[str, Any] | None:
    """Where the job is: `queued`, `transcribing` (chunk n of m for long recordings, as the
    transcriber last reported), `rendering`, `completed` or `failed`; none for a deleted job."""
    state = row.status
    updated = row.updated_at
    if state == "deleted":
        return None
    if state == "processing":
        stored = row.progress
        if isinstance(stored, dict) and stored.get("stage"):
            at = row.progress_updated_at or updated
            return {**stored, "updated_at": at.isoformat()}
        return {"stage": "transcribing", "fraction": None, "updated_at": updated.isoformat()}
    fraction = {"queued": 0.0, "completed": 1.0}.get(state)
    return {"stage": state, "fraction": fraction, "updated_at": updated.isoformat()}
