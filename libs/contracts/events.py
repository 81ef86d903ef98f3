"""Events on the wire: JSON, tagged by `type`, versioned; new fields always get defaults.

Consumers must ignore unknown fields, so decoders never use `forbid_unknown_fields`: an older
transcriber keeps working while a newer ingest adds fields.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

Timestamps = str  # "none" | "segment" | "word"; a plain str so old consumers accept new values


def new_event_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: str
    occurred_at: datetime
    version: int = 1
    # Carried from the HTTP request through every event to the webhook, for log correlation.
    trace_id: str | None = None


class AudioStored(Event, frozen=True, kw_only=True, tag="audio.stored"):
    audio_file_id: str
    tenant: str
    campaign: str
    storage_key: str
    content_type: str
    size: int
    sha256: str
    phone: str | None = None
    recording_id: str | None = None
    model: str | None = None
    language: str | None = None
    timestamps: Timestamps = "segment"
    callback_url: str | None = None
    # A replay with force=True re-transcribes even a completed job.
    force: bool = False
    # Vocabulary or context for the model (names, products, spellings).
    prompt: str | None = None
    # "auto" | "true" | "false": transcribe each channel on its own (a plain str, like
    # timestamps). Events from before multichannel existed downmix, as they did then.
    multichannel: str = "false"
    # Role of channel k (e.g. ["agent", "customer"]); None: the transcriber's default.
    channel_roles: list[str] | None = None
    # The job's redaction policy (libs.redaction.Policy.spec); '' (and every older event): none.
    # The job row is the authority; this copy lets a replay be read without the database.
    redact: str = ""


class TranscriptKeys(msgspec.Struct, frozen=True, kw_only=True):
    json: str
    txt: str
    srt: str | None = None
    vtt: str | None = None


class RedactionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a redacted transcript had removed: the policy and counts per class, never values."""

    policy: str
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    total: int = 0
    # With audio redaction asked for: "redacted", "nothing_to_redact" or "not_redacted" (then
    # audio_detail says why); None when the policy has no audio redaction.
    audio: str | None = None
    audio_detail: str | None = None


class SpeakerMetrics(msgspec.Struct, frozen=True, kw_only=True):
    speaker: str
    role: str | None = None
    channel: int | None = None
    utterances: int = 0
    words: int = 0
    talk_time: float = 0.0
    talk_ratio: float = 0.0
    words_per_minute: float | None = None
    longest_monologue: float = 0.0
    interruptions: int = 0


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """Who spoke, and how: see docs/conversations.md, "Conversation metrics", for each definition.
    Defined here because TranscriptReady carries it; libs.transcript uses the same type."""

    # "channels" (one speaker per recorded channel) or "diarization" (the engine told voices apart).
    method: str
    duration: float
    speakers: tuple[SpeakerMetrics, ...]
    talk_time: float = 0.0
    silence_time: float = 0.0
    silence_ratio: float = 0.0
    overlap_time: float = 0.0
    interruptions: int = 0
    longest_monologue: float = 0.0


class TranscriptReady(Event, frozen=True, kw_only=True, tag="transcript.ready"):
    audio_file_id: str
    tenant: str
    model: str
    engine: str
    language: str | None
    duration: float
    keys: TranscriptKeys
    word_count: int
    recording_id: str | None = None
    # A conversation's speakers and metrics: the `conversation` of the
    # transcription.completed webhook. None for a single voice.
    conversation: Conversation | None = None
    # Set when the job had a redaction policy (then every key above holds redacted text).
    redaction: RedactionSummary | None = None


class TranscriptionFailed(Event, frozen=True, kw_only=True, tag="transcript.failed"):
    audio_file_id: str
    tenant: str
    error_code: str
    detail: str
    attempts: int
    permanent: bool
    recording_id: str | None = None


class TranscriptionDeleted(Event, frozen=True, kw_only=True, tag="transcript.deleted"):
    """A job was deleted (by its key or by retention): its objects are being removed and its
    personal content is gone from Postgres. Carries no personal data itself."""

    audio_file_id: str
    tenant: str
    # `key:<api key id>` (DELETE) or `retention`.
    deleted_by: str
    reason: str = "api"  # "api" | "retention"; a plain str so old consumers accept new values
    recording_id: str | None = None


class JobProgress(Event, frozen=True, kw_only=True, tag="job.progress"):
    """How far a running job got (long recordings, chunk by chunk); rate-limited per job."""

    audio_file_id: str
    tenant: str
    # "transcribing" (chunk of chunks) or "rendering"; a plain str so new stages decode.
    stage: str
    fraction: float | None = None
    chunk: int | None = None
    chunks: int | None = None
    channel: int | None = None


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """Where in a call something was found: an utterance (redacted text) and its times."""

    start: float
    end: float
    text: str
    role: str | None = None
    speaker: str | None = None


class CategoryMatch(msgspec.Struct, frozen=True, kw_only=True):
    """A category (a key's rule) that matched a call, with the evidence of each phrase rule."""

    name: str
    matches: tuple[Evidence, ...] = ()


class ActionItem(msgspec.Struct, frozen=True, kw_only=True):
    owner: str  # "agent" | "customer"
    text: str


class RoleSentiment(msgspec.Struct, frozen=True, kw_only=True):
    role: str  # "agent" | "customer" (or a speaker label)
    sentiment: str  # "positive" | "neutral" | "negative"


class QuestionAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """One answer of a QA scorecard: `answer` is "yes"/"no" for a yes/no question, else text."""

    question: str
    answer: str
    evidence: str | None = None
    start: float | None = None
    end: float | None = None


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Insights(msgspec.Struct, frozen=True, kw_only=True):
    """What a chat model said about a call (redacted text only ever reaches the model)."""

    model: str
    summary: str | None = None
    reason: str | None = None
    outcome: str | None = None
    action_items: tuple[ActionItem, ...] = ()
    sentiment: tuple[RoleSentiment, ...] = ()
    answers: tuple[QuestionAnswer, ...] = ()
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


class InsightsReady(Event, frozen=True, kw_only=True, tag="insights.ready"):
    """A completed transcript's categories (rules, always) and LLM insights (when configured).

    `status`: "completed", "failed" (then `reason` says why; categories are still given) or
    "not_configured" (no chat model, or insights turned off for the key: categories only)."""

    audio_file_id: str
    tenant: str
    status: str
    campaign: str | None = None
    recording_id: str | None = None
    categories: tuple[CategoryMatch, ...] = ()
    insights: Insights | None = None
    reason: str | None = None


AnyEvent = (
    AudioStored
    | TranscriptReady
    | TranscriptionFailed
    | TranscriptionDeleted
    | JobProgress
    | InsightsReady
)

_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


# One decoder per subject family; each accepts only the event types that family carries.
audio_stored_decoder: msgspec.json.Decoder[AudioStored] = msgspec.json.Decoder(AudioStored)
# What the notifier consumes: the outcomes of a job that webhooks announce.
TranscriptResult = TranscriptReady | TranscriptionFailed | TranscriptionDeleted | JobProgress
transcript_result_decoder: msgspec.json.Decoder[TranscriptResult] = msgspec.json.Decoder(
    TranscriptResult
)
insights_source_decoder: msgspec.json.Decoder[TranscriptReady] = msgspec.json.Decoder(
    TranscriptReady
)
insights_ready_decoder: msgspec.json.Decoder[InsightsReady] = msgspec.json.Decoder(InsightsReady)
any_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
