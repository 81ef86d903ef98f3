"""The canonical transcript: every engine produces it, every output format renders from it.

Conversations (a call recorded on two channels, or a mono recording diarized by the engine)
add `utterances`, one per turn of one speaker, and `conversation`, the speaker summary and the
metrics of libs.transcript.conversation. Both default to empty, so transcripts stored before
they existed decode unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.contracts import Conversation


class Word(msgspec.Struct, frozen=True):
    start: float
    end: float
    word: str


class Segment(msgspec.Struct, frozen=True):
    id: int
    start: float
    end: float
    text: str


class Utterance(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of one speaker, timed in seconds of the original recording."""

    # A stable label: "Channel 0", "Channel 1" for channels; the engine's label (or a known
    # speaker name) for diarization.
    speaker: str
    start: float
    end: float
    text: str
    # "agent", "customer", ... from the channel -> role map; None when no role is known.
    role: str | None = None
    # The source channel (0-based) when the speakers come from channels.
    channel: int | None = None
    words: tuple[Word, ...] | None = None

    @property
    def label(self) -> str:
        """What renderers print before the text: the role ("Agent") if known, else the speaker."""
        return self.role.capitalize() if self.role else self.speaker


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()
    # Only filled when the caller asked for word timestamps.
    words: tuple[Word, ...] | None = None
    model: str
    engine: str
    engine_metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    # Who said what, in time order; empty when the speakers are unknown.
    utterances: tuple[Utterance, ...] = ()
    conversation: Conversation | None = None

    @property
    def word_count(self) -> int:
        return len(self.text.split())


def with_asked_timings(transcript: Transcript, timestamps: str) -> Transcript:
    """The transcript as the caller asked for it: word timings (top-level `words` and each
    utterance's `words`) only with `timestamps=word`. The engine may have been asked for words
    anyway (audio redaction needs their spans) or volunteered them; every transcript passes
    here before it is stored, whatever the redaction policy."""
    if timestamps == "word":
        return transcript
    if transcript.words is None and all(u.words is None for u in transcript.utterances):
        return transcript
    utterances = tuple(msgspec.structs.replace(u, words=None) for u in transcript.utterances)
    return msgspec.structs.replace(transcript, words=None, utterances=utterances)
