from libs.transcript.model import (
    Conversation,
    Segment,
    SpeakerMetrics,
    Transcript,
    Utterance,
    Word,
    with_asked_timings,
)

__all__ = [
    "Conversation",
    "Segment",
    "SpeakerMetrics",
    "Transcript",
    "Utterance",
    "Word",
    "with_asked_timings",
]
