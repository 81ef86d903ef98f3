from libs.transcript.model import (
    Conversation,
    Segment,
    SpeakerMetrics,
    Transcript,
    Utterance,
    Word,
)

__all__ = ["Conversation", "Segment", "SpeakerMetrics", "Transcript", "Utterance", "Word"]
