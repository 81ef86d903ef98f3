"""The canonical transcript: every engine produces it, every output format renders from it."""

from __future__ import annotations

from typing import Any

import msgspec


class Word(msgspec.Struct, frozen=True):
    start: float
    end: float
    word: str


class Segment(msgspec.Struct, frozen=True):
    id: int
    start: float
    end: float
    text: str


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

    @property
    def word_count(self) -> int:
        return len(self.text.split())
