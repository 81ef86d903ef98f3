"""The evidence of a job's redaction, as stored in `transcriptions.redaction` (JSONB) and read
back by the status answer: one type, defined here, for the writer and the readers.

The stored shape is the one the transcriber has always written (the report's fields, then
`original_stored` and `audio` only when they apply), so records stored before this type existed
decode unchanged (migration 0024 took the object keys out of older ones).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.contracts import RedactionSummary
from libs.redaction.apply import RedactedSpan, RedactionReport, Timing

AudioStatus = Literal["redacted", "nothing_to_redact", "not_redacted"]


class AudioOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What audio redaction did: `redacted` (with where the copy is and how), or why not."""

    status: AudioStatus
    reason: str | None = None  # not_redacted: why (said to the client)
    # No key: keys name the phone; the copy's key follows from the job's audio key by the
    # layout (libs.layout.redacted_audio_key).
    mode: Literal["beep", "silence"] | None = None
    # words: each value's own time span; segments: the whole segments that said one.
    precision: Timing | None = None
    spans: int | None = None
    replaced_original: bool | None = None


class RedactionRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    # Always written (no defaults, so never omitted): the report's fields.
    policy: str
    counts: dict[str, int]
    spans: tuple[RedactedSpan, ...]
    timing: Timing
    dropped_metadata: tuple[str, ...]
    # keep=both: the unredacted transcript is stored (at the layout's key for the job; no key
    # here, since keys name the phone).
    original_stored: bool | None = None
    # Set when the policy asks for audio redaction.
    audio: AudioOutcome | None = None

    @classmethod
    def of(
        cls,
        report: RedactionReport,
        *,
        original_stored: bool | None = None,
        audio: AudioOutcome | None = None,
    ) -> RedactionRecord:
        return cls(
            policy=report.policy,
            counts=dict(report.counts),
            spans=report.spans,
            timing=report.timing,
            dropped_metadata=report.dropped_metadata,
            original_stored=original_stored,
            audio=audio,
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> RedactionSummary:
        """What the TranscriptReady event (and so the webhook) says: counts, never spans."""
        return RedactionSummary(
            policy=self.policy,
            counts=dict(self.counts),
            total=self.total,
            audio=self.audio.status if self.audio is not None else None,
            audio_detail=self.audio.reason if self.audio is not None else None,
        )
