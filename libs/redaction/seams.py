"""Digit runs at the edges of a chunk, masked in the chunks saved between attempts.

A long recording is transcribed in chunks cut at silences, and the pause a caller makes while
reading a card number is a silence: the number can be cut in two. Each finished chunk is saved
in Postgres so that a failed attempt resumes where it stopped, and it is saved redacted; but a
chunk is redacted on its own, and half a card number is no card number. The neighbouring chunk
may not even be transcribed yet (chunks finish in any order, and an attempt can fail before it
is), so the saved row cannot be redacted "in context". It fails closed instead: with a policy,
every run of digits that reaches the start or the end of a chunk's text (allowing a few words
in between, as in "four one one one, hold on, one one ...") is replaced by a placeholder, as if
it were the value it may be part of. No digit said near a cut is stored in the clear; the price
is that a resumed job may show a placeholder, and count a value, for digits that were not one
(the first attempt, which merges the chunks it transcribed itself, is exact). The placeholder
is an entity name (``[CREDIT_CARD]``, or the policy's most sensitive digit class), which the
merged transcript's redaction finds again: counted, timed for the audio, substituted.

A conversation's edges are each speaker's: in a saved chunk, the digit runs at the start and
end of every speaker's words are masked. The same holds in the final redaction of a long
diarized recording, whose voices are labelled per chunk ("Speaker A (part 2)"), so that a
number cut by the chunk boundary is two halves of two "speakers".

Digits: written (any script: Arabic-Indic, full-width...), spoken ("four", "oh", "forty",
"double"), and "for", "to", "too" when they touch a run (an engine's homophones).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Sequence

from libs.redaction.detect import Finding, detect
from libs.redaction.policy import EntityClass
from libs.redaction.spoken import REPEATS, TEENS, TENS, UNITS, tokenize

# Words that may stand between two groups of one number without ending it at a seam (two
# interjections: "hold on, let me see"), and between the edge and the run.
GAP = 6
_SPOKEN = frozenset(UNITS) | frozenset(TEENS) | frozenset(TENS) | frozenset(REPEATS)
_SPOKEN |= {"hundred", "thousand", "zero", "oh", "o"}
_HOMOPHONES = frozenset({"for", "fore", "to", "too", "won", "ate"})
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")
# The class a masked run is named after: the first of these the policy redacts.
_MASK_ORDER = (
    EntityClass.CREDIT_CARD,
    EntityClass.SSN,
    EntityClass.PHONE,
    EntityClass.CVV,
    EntityClass.EXPIRY,
    EntityClass.DOB,
)

Finder = Callable[[str], list[Finding]]


class _Kind(enum.Enum):
    DIGIT = 1  # a digit, a number word, or a placeholder of an earlier pass
    MAYBE = 2  # a homophone: a digit only next to one
    WORD = 3
    MARK = 4  # punctuation: neither ends nor extends a run


def _marks(text: str) -> list[tuple[int, int, _Kind]]:
    """(start, end, kind) of every token, a placeholder counting as one digit token."""
    held = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    marks: list[tuple[int, int, _Kind]] = [(s, e, _Kind.DIGIT) for s, e in held]
    k = 0
    for token in tokenize(text):
        while k < len(held) and held[k][1] <= token.start:
            k += 1
        if k < len(held) and held[k][0] <= token.start < held[k][1]:
            continue
        t = token.text
        if any(ch.isdigit() for ch in t) or t in _SPOKEN:
            kind = _Kind.DIGIT
        elif t in _HOMOPHONES:
            kind = _Kind.MAYBE
        elif not any(ch.isalnum() for ch in t):
            kind = _Kind.MARK
        else:
            kind = _Kind.WORD
        marks.append((token.start, token.end, kind))
    marks.sort()
    return marks


def _run(marks: Sequence[tuple[int, int, _Kind]]) -> tuple[int, int] | None:
    """The digit run reached from the first mark on (the edge), if it has a digit."""
    gap = 0
    lo: int | None = None
    hi: int | None = None
    digit = False
    for start, end, kind in marks:
        if kind is _Kind.MARK:
            continue
        if kind is _Kind.WORD or (kind is _Kind.MAYBE and gap > 0):
            gap += 1
            if gap > GAP:
                break
            continue
        gap = 0
        digit = digit or kind is _Kind.DIGIT
        lo = start if lo is None else min(lo, start)
        hi = end if hi is None else max(hi, end)
    if not digit or lo is None or hi is None:
        return None
    return lo, hi


def edge_runs(text: str) -> list[tuple[int, int]]:
    """Character spans of the digit runs that reach the start or the end of `text` (one span
    when a run reaches both)."""
    marks = _marks(text)
    spans = [s for s in (_run(marks), _run(marks[::-1])) if s is not None]
    if len(spans) == 2 and spans[1][0] <= spans[0][1]:
        return [(spans[0][0], max(spans[0][1], spans[1][1]))]
    return spans


def mask_class(classes: Collection[EntityClass]) -> EntityClass | None:
    """The class a masked run is named after; None when the policy redacts no digits."""
    return next((c for c in _MASK_ORDER if c in classes), None)


def _union(found: Sequence[Finding], masked: Sequence[Finding]) -> list[Finding]:
    """Findings and masked runs as non-overlapping findings: overlapping ones become one,
    named after the detector's class when a detector found part of it."""
    tagged = sorted(
        [(f, True) for f in found] + [(f, False) for f in masked], key=lambda t: t[0].start
    )
    merged: list[tuple[Finding, bool]] = []
    for f, detected in tagged:
        if merged and f.start < merged[-1][0].end:
            last, last_detected = merged[-1]
            cls = last.cls if last_detected or not detected else f.cls
            merged[-1] = (
                Finding(cls, last.start, max(last.end, f.end), ""),
                last_detected or detected,
            )
        else:
            merged.append((f, detected))
    return [f for f, _ in merged]


def with_edges(classes: Collection[EntityClass], deadline: float | None = None) -> Finder:
    """The detectors of `classes` (bounded by `deadline`, see libs.redaction.deadline), plus
    every digit run at the edges of the text."""
    cls = mask_class(classes)

    def find(text: str) -> list[Finding]:
        found = detect(text, classes, deadline=deadline)
        if cls is None:
            return found
        return _union(found, [Finding(cls, s, e, "") for s, e in edge_runs(text)])

    return find
