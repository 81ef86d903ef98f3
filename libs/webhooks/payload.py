"""Webhook bodies: `{type, timestamp, data}` as Standard Webhooks recommends."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from libs.contracts import (
    CategoryMatch,
    Conversation,
    Insights,
    InsightsReady,
    JobProgress,
    RedactionSummary,
    TranscriptionDeleted,
    TranscriptionFailed,
    TranscriptReady,
)
from libs.formats import Uri, Uuid
from libs.webhooks.queue import EventJob

# Beyond this the body carries a link instead of the whole transcript.
TRANSCRIPT_CAP = 64 * 1024

COMPLETED = "transcription.completed"
FAILED = "transcription.failed"
DELETED = "transcription.deleted"
PROGRESS = "transcription.progress"
INSIGHTS = "transcription.insights"
TEST = "webhook.test"


class Webhook(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Every webhook body: `{type, timestamp, data}`. `type` is the subclass's tag (msgspec
    writes it first), `data` the event's own Struct. The bytes are the public contract, pinned
    by tests/golden/webhook_*.json: fields keep their order; a key sent only when set is a
    None default in a Struct with `omit_defaults`; every other key is always sent (null when
    unset)."""

    timestamp: Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class TranscriptionCompletedData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`data` of a `transcription.completed` webhook. Beyond the cap (64 KiB) `transcript` is
    null and `transcript_truncated` true: fetch `transcript_url`. `conversation` and `redaction`
    are present only when the job has them."""

    audio_file_id: Uuid
    recording_id: str | None
    status: Literal["completed"]
    b2_prefix: str
    campaign: str | None
    phone: str | None
    transcript: str | None
    transcript_truncated: bool
    transcript_url: Uri
    language: str | None
    duration: float
    model: str
    engine: str
    word_count: int
    b2_audio_key: str | None
    b2_transcript_json_key: str
    b2_transcript_txt_key: str
    b2_transcript_srt_key: str | None
    b2_transcript_vtt_key: str | None
    trace_id: str | None
    # Who spoke and how: the speakers with their roles and the conversation metrics.
    conversation: Conversation | None = None
    # The transcript above is the redacted one; these are counts, never values.
    redaction: RedactionSummary | None = None


class TranscriptionCompletedWebhook(Webhook, frozen=True, kw_only=True, tag=COMPLETED):
    """The body POSTed when a job's transcript is ready."""

    data: TranscriptionCompletedData


def completed_body(
    event: TranscriptReady,
    job: EventJob,
    text: str,
    *,
    transcript_url: str,
    cap: int = TRANSCRIPT_CAP,
) -> bytes:
    truncated = len(text.encode()) > cap
    data = TranscriptionCompletedData(
        audio_file_id=event.audio_file_id,
        recording_id=event.recording_id or job.recording_id,
        status="completed",
        b2_prefix=event.tenant,
        campaign=job.campaign_name,
        phone=job.phone,
        transcript=None if truncated else text,
        transcript_truncated=truncated,
        transcript_url=transcript_url,
        language=event.language,
        duration=event.duration,
        model=event.model,
        engine=event.engine,
        word_count=event.word_count,
        b2_audio_key=job.b2_object_key,
        b2_transcript_json_key=event.keys.json,
        b2_transcript_txt_key=event.keys.txt,
        b2_transcript_srt_key=event.keys.srt,
        b2_transcript_vtt_key=event.keys.vtt,
        trace_id=event.trace_id,
        conversation=event.conversation,
        redaction=event.redaction,
    )
    return encode(TranscriptionCompletedWebhook(timestamp=event.occurred_at, data=data))


class TranscriptionFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job failed: its code (docs/api.md, "Errors") and whether a retry can help."""

    code: str
    detail: str
    permanent: bool
    attempts: int


class TranscriptionFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `transcription.failed` webhook."""

    audio_file_id: Uuid
    recording_id: str | None
    status: Literal["failed"]
    b2_audio_key: str | None
    b2_prefix: str
    campaign: str | None
    phone: str | None
    error: TranscriptionFailure
    trace_id: str | None


class TranscriptionFailedWebhook(Webhook, frozen=True, kw_only=True, tag=FAILED):
    """The body POSTed when a job failed."""

    data: TranscriptionFailedData


def failed_body(event: TranscriptionFailed, job: EventJob) -> bytes:
    data = TranscriptionFailedData(
        audio_file_id=event.audio_file_id,
        recording_id=event.recording_id or job.recording_id,
        status="failed",
        b2_audio_key=job.b2_object_key,
        b2_prefix=event.tenant,
        campaign=job.campaign_name,
        phone=job.phone,
        error=TranscriptionFailure(
            code=event.error_code,
            detail=event.detail,
            permanent=event.permanent,
            attempts=event.attempts,
        ),
        trace_id=event.trace_id,
    )
    return encode(TranscriptionFailedWebhook(timestamp=event.occurred_at, data=data))


class TranscriptionDeletedData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `transcription.deleted` webhook: ids and who deleted the job (`reason`: "api"
    or "retention"), no personal data (the job has none left)."""

    audio_file_id: Uuid
    recording_id: str | None
    status: Literal["deleted"]
    b2_prefix: str
    campaign: str | None
    deleted_by: str
    reason: str
    trace_id: str | None


class TranscriptionDeletedWebhook(Webhook, frozen=True, kw_only=True, tag=DELETED):
    """The body POSTed when a job was deleted (by its key or by retention)."""

    data: TranscriptionDeletedData


def deleted_body(event: TranscriptionDeleted, job: EventJob) -> bytes:
    """The job is deleted: ids and who deleted it, no personal data (the job has none left)."""
    data = TranscriptionDeletedData(
        audio_file_id=event.audio_file_id,
        recording_id=event.recording_id or job.recording_id,
        status="deleted",
        b2_prefix=event.tenant,
        campaign=job.campaign_name,
        deleted_by=event.deleted_by,
        reason=event.reason,
        trace_id=event.trace_id,
    )
    return encode(TranscriptionDeletedWebhook(timestamp=event.occurred_at, data=data))


class TranscriptionProgressData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `transcription.progress` webhook (opt-in per key): how far a running job got;
    `fraction`, `chunk`, `chunks` and `channel` are null when the stage has none."""

    audio_file_id: Uuid
    recording_id: str | None
    status: Literal["processing"]
    b2_prefix: str
    stage: str
    fraction: float | None
    chunk: int | None
    chunks: int | None
    channel: int | None
    trace_id: str | None


class TranscriptionProgressWebhook(Webhook, frozen=True, kw_only=True, tag=PROGRESS):
    """The body POSTed as a running job moves on (keys that opted in)."""

    data: TranscriptionProgressData


def progress_body(event: JobProgress, job: EventJob) -> bytes:
    """How far a running job got (opt-in per key); no personal data."""
    data = TranscriptionProgressData(
        audio_file_id=event.audio_file_id,
        recording_id=job.recording_id,
        status="processing",
        b2_prefix=event.tenant,
        stage=event.stage,
        fraction=event.fraction,
        chunk=event.chunk,
        chunks=event.chunks,
        channel=event.channel,
        trace_id=event.trace_id,
    )
    return encode(TranscriptionProgressWebhook(timestamp=event.occurred_at, data=data))


class TranscriptionInsightsData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `transcription.insights` webhook: the job's categories (always) and the chat
    model's insights (status `completed`), or why there are none (`failed` with `reason`,
    `not_configured`). Redacted text only: evidence and answers quote the redacted transcript."""

    audio_file_id: Uuid
    recording_id: str | None
    status: str
    b2_prefix: str
    campaign: str | None
    categories: tuple[CategoryMatch, ...]
    insights: Insights | None
    reason: str | None
    trace_id: str | None


class TranscriptionInsightsWebhook(Webhook, frozen=True, kw_only=True, tag=INSIGHTS):
    """The body POSTed when a job's categories and insights are ready."""

    data: TranscriptionInsightsData


def insights_body(event: InsightsReady, job: EventJob) -> bytes:
    """The `transcription.insights` webhook of an InsightsReady event (services/insights)."""
    data = TranscriptionInsightsData(
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
    return encode(TranscriptionInsightsWebhook(timestamp=event.occurred_at, data=data))


class WebhookTestData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `webhook.test` event: no job is attached; `webhook_id` is the delivery's
    webhook-id and `api_key_hint` the hint of the key that sent it."""

    test: bool
    message: str
    webhook_id: Uuid
    api_key_hint: str


class WebhookTestEvent(Webhook, frozen=True, kw_only=True, tag=TEST):
    """The body POSTed by "send a test event" (POST /api/webhooks/test)."""

    data: WebhookTestData


def test_body(*, event_id: str, occurred_at: datetime, key_hint: str) -> bytes:
    """What "send a test event" delivers: signed like any event, and marked as a test."""
    data = WebhookTestData(
        test=True,
        message="Test event from the transcription gateway; no job is attached.",
        webhook_id=event_id,
        api_key_hint=key_hint,
    )
    return encode(WebhookTestEvent(timestamp=occurred_at, data=data))


# Every body a receiver can get; /openapi.json documents each as a schema.
WEBHOOKS: tuple[type[Webhook], ...] = (
    TranscriptionCompletedWebhook,
    TranscriptionFailedWebhook,
    TranscriptionDeletedWebhook,
    TranscriptionProgressWebhook,
    TranscriptionInsightsWebhook,
    WebhookTestEvent,
)

_encoder = msgspec.json.Encoder()


def encode(body: Webhook) -> bytes:
    """The bytes a receiver gets (and the signature covers)."""
    return _encoder.encode(body)
