"""What a category rule looks at: one call's redacted utterances (the rows the search index
holds, so a rule applied later to a stored call sees what it saw live), its duration, its
conversation metrics and its redaction counts per class. Only redacted text ever gets here."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from libs.contracts import Conversation
from libs.search import rows
from libs.transcript import Transcript


class Utterance(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    text: str
    role: str | None = None
    speaker: str | None = None


class Call(msgspec.Struct, frozen=True, kw_only=True):
    utterances: tuple[Utterance, ...]
    duration: float
    conversation: Conversation | None = None
    # Redaction counts per class ("credit_card": 2); classes with no count are 0.
    redacted: dict[str, int] = msgspec.field(default_factory=dict)

    @classmethod
    def from_transcript(
        cls,
        transcript: Transcript,
        conversation: Conversation | None,
        redacted: Mapping[str, int],
    ) -> Call:
        """The call of a (redacted) transcript: its utterances as the search index stores them
        (utterances, else segments, else the whole text; long ones in pieces)."""
        utterances = tuple(
            Utterance(start=u.start, end=u.end, text=u.text, role=u.role, speaker=u.speaker)
            for u in rows.utterances(transcript)
        )
        duration = (conversation.duration if conversation else 0.0) or transcript.duration
        return cls(
            utterances=utterances,
            duration=duration,
            conversation=conversation,
            redacted=dict(redacted),
        )
