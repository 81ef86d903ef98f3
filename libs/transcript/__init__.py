from libs.contracts import Conversation, SpeakerMetrics
from libs.transcript.model import (
    ChunkInfo,
    EngineMetadata,
    Segment,
    Transcript,
    Utterance,
    Word,
    with_asked_timings,
)

__all__ = [
    "ChunkInfo",
    "Conversation",
    "EngineMetadata",
    "Segment",
    "SpeakerMetrics",
    "Transcript",
    "Utterance",
    "Word",
    "with_asked_timings",
]
