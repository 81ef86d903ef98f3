"""The reference status shape: {status: pending|completed|failed, transcript, metadata}."""

from __future__ import annotations

from typing import Any

import asyncpg


def status_body(row: asyncpg.Record) -> dict[str, Any]:
    state = row["status"]
    public = "completed" if state == "completed" else "failed" if state == "failed" else "pending"
    metadata: dict[str, Any] = {
        "audio_file_id": str(row["id"]),
        "state": state,
        "recording_id": row["recording_id"],
        "phone": row["phone"],
        "campaign": row["campaign_name"],
        "company": row["company"],
        "b2_prefix": row["tenant_prefix"],
        "b2_key": row["b2_object_key"],
        "attempts": row["attempts"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    transcript = None
    if public == "completed" and row["text"] is not None:
        transcript = row["text"]
        metadata.update(
            model=row["model"],
            engine=row["engine"],
            language=row["language"],
            duration=row["duration_seconds"],
            word_count=row["word_count"],
            b2_transcript_json_key=row["b2_transcript_json_key"],
            b2_transcript_txt_key=row["b2_transcript_txt_key"],
            b2_transcript_srt_key=row["b2_transcript_srt_key"],
            b2_transcript_vtt_key=row["b2_transcript_vtt_key"],
            completed_at=row["completed_at"].isoformat() if row["completed_at"] else None,
        )
        redaction = row["redaction"]
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
    if public == "failed":
        metadata["error"] = {
            "code": row["error_code"],
            "detail": row["failure_error"] or row["last_error"],
            "permanent": row["failure_status"] == "permanent",
        }
    elif row["failure_status"] == "transient":
        # Still pending, but the last attempt failed: say so, so callers know it is retrying.
        metadata["last_error"] = {"code": row["error_code"], "detail": row["failure_error"]}
    return {"status": public, "transcript": transcript, "metadata": metadata}
