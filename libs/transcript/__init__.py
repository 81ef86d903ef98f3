from libs.contracts import Conversation, SpeakerMetrics
from libs.transcript.model import (
    Segment,
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
