"""Webhook bodies: `{type, timestamp, data}` as Standard Webhooks recommends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from libs.contracts import (
    CategoryMatch,
    Insights,
    InsightsReady,
    JobProgress,
    TranscriptionDeleted,
    TranscriptionFailed,
    TranscriptReady,
)
from libs.webhooks.queue import EventJob

# Beyond this the body carries a link instead of the whole transcript.
TRANSCRIPT_CAP = 64 * 1024

COMPLETED = "transcription.completed"
FAILED = "transcription.failed"
DELETED = "transcription.deleted"
PROGRESS = "transcription.progress"
INSIGHTS = "transcription.insights"


TEST = "webhook.test"


def completed_body(
    event: TranscriptReady,
    job: EventJob,
    text: str,
    *,
    transcript_url: str,
    cap: int = TRANSCRIPT_CAP,
) -> bytes:
    encoded = text.encode()
    truncated = len(encoded) > cap
    data: dict[str, Any] = {
        "audio_file_id": event.audio_file_id,
        "recording_id": event.recording_id or job.recording_id,
        "status": "completed",
        "b2_prefix": event.tenant,
        "campaign": job.campaign_name,
        "phone": job.phone,
        "transcript": None if truncated else text,
        "transcript_truncated": truncated,
        "transcript_url": transcript_url,
        "language": event.language,
        "duration": event.duration,
        "model": event.model,
        "engine": event.engine,
        "word_count": event.word_count,
        "b2_audio_key": job.b2_object_key,
        "b2_transcript_json_key": event.keys.json,
        "b2_transcript_txt_key": event.keys.txt,
        "b2_transcript_srt_key": event.keys.srt,
        "b2_transcript_vtt_key": event.keys.vtt,
        "trace_id": event.trace_id,
    }
    if event.conversation is not None:
        # Who spoke and how: the speakers with their roles and the conversation metrics.
        data["conversation"] = event.conversation
    if event.redaction is not None:
        # The transcript above is the redacted one; these are counts, never values.
        data["redaction"] = msgspec.to_builtins(event.redaction)
    return msgspec.json.encode({"type": COMPLETED, "timestamp": event.occurred_at, "data": data})


def failed_body(event: TranscriptionFailed, job: EventJob) -> bytes:
    data: dict[str, Any] = {
        "audio_file_id": event.audio_file_id,
        "recording_id": event.recording_id or job.recording_id,
        "status": "failed",
        "b2_audio_key": job.b2_object_key,
        "b2_prefix": event.tenant,
        "campaign": job.campaign_name,
        "phone": job.phone,
        "error": {
            "code": event.error_code,
            "detail": event.detail,
            "permanent": event.permanent,
            "attempts": event.attempts,
        },
        "trace_id": event.trace_id,
    }
    return msgspec.json.encode({"type": FAILED, "timestamp": event.occurred_at, "data": data})


def deleted_body(event: TranscriptionDeleted, job: EventJob) -> bytes:
    """The job is deleted: ids and who deleted it, no personal data (the job has none left)."""
    data: dict[str, Any] = {
        "audio_file_id": event.audio_file_id,
        "recording_id": event.recording_id or job.recording_id,
        "status": "deleted",
        "b2_prefix": event.tenant,
        "campaign": job.campaign_name,
        "deleted_by": event.deleted_by,
        "reason": event.reason,
        "trace_id": event.trace_id,
    }
    return msgspec.json.encode({"type": DELETED, "timestamp": event.occurred_at, "data": data})


def progress_body(event: JobProgress, job: EventJob) -> bytes:
    """How far a running job got (opt-in per key); no personal data."""
    data: dict[str, Any] = {
        "audio_file_id": event.audio_file_id,
        "recording_id": job.recording_id,
        "status": "processing",
        "b2_prefix": event.tenant,
        "stage": event.stage,
        "fraction": event.fraction,
        "chunk": event.chunk,
        "chunks": event.chunks,
        "channel": event.channel,
        "trace_id": event.trace_id,
    }
    return msgspec.json.encode({"type": PROGRESS, "timestamp": event.occurred_at, "data": data})


class InsightsData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `transcription.insights` webhook: the job's categories (always) and the chat
    model's insights (status `completed`), or why there are none (`failed` with `reason`,
    `not_configured`). Redacted text only: evidence and answers quote the redacted transcript."""

    audio_file_id: str
    recording_id: str | None
    status: str
    b2_prefix: str
    campaign: str | None
    categories: tuple[CategoryMatch, ...]
    insights: Insights | None
    reason: str | None
    trace_id: str | None


class InsightsWebhook(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    timestamp: datetime
    data: InsightsData


def insights_body(event: InsightsReady, job: EventJob) -> bytes:
    """The `transcription.insights` webhook of an InsightsReady event (services/insights)."""
    data = InsightsData(
        audio_file_id=event.audio_file_id,
        recording_id=event.recording_id or job.recording_id,
        status=event.status,
        b2_prefix=event.tenant,
        campaign=event.campaign if event.campaign is not None else job.campaign_name,
        categories=event.categories,
        insights=event.insights,
        reason=event.reason,
        trace_id=event.trace_id,
    )
    return msgspec.json.encode(
        InsightsWebhook(type=INSIGHTS, timestamp=event.occurred_at, data=data)
    )


def test_body(*, event_id: str, occurred_at: datetime, key_hint: str) -> bytes:
    """What "send a test event" delivers: signed like any event, and marked as a test."""
    data = {
        "test": True,
        "message": "Test event from the transcription gateway; no job is attached.",
        "webhook_id": event_id,
        "api_key_hint": key_hint,
    }
    return msgspec.json.encode({"type": TEST, "timestamp": occurred_at, "data": data})
