"""The wire contract: events, subjects, stream and consumer definitions."""

from libs.contracts.events import (
    AnyEvent,
    AudioStored,
    Event,
    JobProgress,
    RedactionSummary,
    TranscriptionDeleted,
    TranscriptionFailed,
    TranscriptKeys,
    TranscriptReady,
    TranscriptResult,
    any_event_decoder,
    audio_stored_decoder,
    encode,
    new_event_id,
    transcript_result_decoder,
    utcnow,
)

__all__ = [
    "AnyEvent",
    "AudioStored",
    "Event",
    "JobProgress",
    "RedactionSummary",
    "TranscriptKeys",
    "TranscriptReady",
    "TranscriptResult",
    "TranscriptionDeleted",
    "TranscriptionFailed",
    "any_event_decoder",
    "audio_stored_decoder",
    "encode",
    "new_event_id",
    "transcript_result_decoder",
    "utcnow",
]
