"""Apply a policy to text and to a whole `Transcript`, and say what was redacted without saying
what it was.

Every text-bearing field of a transcript goes through ``redact_transcript``: the full text,
each timed field listed in ``TIMED_FIELDS`` (segments, words, a conversation's utterances and
the words inside each), and ``engine_metadata`` (the engine's raw response is dropped, since it
repeats the unredacted text). Timed fields are redacted as one joined text, so a card number
read across two segments or twenty words is still one finding; its pieces are written back to
the items they came from. Words covered by one finding become a single word holding the
substitution, spanning the first word's start to the last word's end: the time span that audio
redaction needs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import msgspec

from libs.redaction.detect import Finding, detect
from libs.redaction.policy import EntityClass, Policy
from libs.transcript.model import Transcript


class TimedField(NamedTuple):
    name: str  # attribute of Transcript holding a tuple of timed structs (or None)
    text_attr: str  # the struct's text attribute
    merge: bool  # drop items a finding swallowed whole, widening the first (words)


TIMED_FIELDS: tuple[TimedField, ...] = (
    TimedField("segments", "text", merge=False),
    TimedField("words", "word", merge=True),
    # A conversation's turns (issue #13); each turn's own words are redacted below.
    TimedField("utterances", "text", merge=False),
)
_WORDS = TIMED_FIELDS[1]


class RedactedSpan(msgspec.Struct, frozen=True, kw_only=True):
    """One redacted value: its class and where it was said, never what it was."""

    cls: str
    start: float | None = None  # seconds; None when the transcript has no timings
    end: float | None = None


class RedactionReport(msgspec.Struct, frozen=True, kw_only=True):
    policy: str  # Policy.spec
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    spans: tuple[RedactedSpan, ...] = ()
    # Where the time spans come from: word timestamps (exact enough for audio), segment
    # bounds (coarse), or nowhere (a transcript with neither).
    timing: Literal["words", "segments", "none"] = "none"
    dropped_metadata: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def substitute(finding: Finding, policy: Policy) -> str:
    cls, digits = finding.cls, finding.digits
    if policy.substitution == "entity" or (
        policy.substitution == "last4" and cls is not EntityClass.CREDIT_CARD
    ):
        return cls.label
    if not digits or cls in (EntityClass.EMAIL, EntityClass.DOB):
        return "####"
    if cls is not EntityClass.CREDIT_CARD:
        return "#" * len(digits)
    keep = 4 if policy.substitution == "last4" else 0
    masked = "#" * (len(digits) - keep) + digits[len(digits) - keep :]
    return " ".join(masked[i : i + 4] for i in range(0, len(masked), 4))


def redact_text(
    text: str, policy: Policy, *, deadline: float | None = None
) -> tuple[str, list[Finding]]:
    """``deadline``: a ``time.monotonic()`` value after which detection raises
    ``RedactionTimeout`` (see ``detect``)."""
    findings = detect(text, policy.classes, deadline=deadline)
    return _replace(text, findings, policy), findings


def _replace(text: str, findings: Sequence[Finding], policy: Policy) -> str:
    out: list[str] = []
    at = 0
    for f in findings:
        out.append(text[at : f.start])
        out.append(substitute(f, policy))
        at = f.end
    out.append(text[at:])
    return "".join(out)


class _Located(NamedTuple):
    finding: Finding
    first: int  # index of the first and last piece the finding touches
    last: int


def redact_pieces(
    pieces: Sequence[str], policy: Policy, *, deadline: float | None = None
) -> tuple[list[str], list[_Located]]:
    """Redacts pieces (segment texts, words) as one text joined by spaces, so a value said
    across pieces is found; returns the new pieces (a swallowed piece becomes "") and where
    each finding lies."""
    bounds: list[tuple[int, int]] = []
    at = 0
    for piece in pieces:
        bounds.append((at, at + len(piece)))
        at += len(piece) + 1
    joined = " ".join(pieces)
    findings = detect(joined, policy.classes, deadline=deadline)
    if not findings:
        return list(pieces), []
    # Pieces and findings are both in text order (findings never overlap): each is found by
    # bisection or a pointer moving forward, so the work is linear in pieces plus findings.
    starts = [s for s, _ in bounds]
    ends = [e for _, e in bounds]
    located = [
        _Located(f, bisect_right(ends, f.start), bisect_left(starts, f.end) - 1) for f in findings
    ]
    out: list[str] = []
    first_open = 0  # the first finding that may still reach the current piece
    for i, (s, e) in enumerate(bounds):
        while first_open < len(located) and located[first_open].finding.end <= s:
            first_open += 1
        relevant = []
        k = first_open
        while k < len(located) and located[k].finding.start < e:
            relevant.append(located[k])
            k += 1
        if not relevant:
            out.append(pieces[i])
            continue
        parts: list[str] = []
        cursor = s
        for loc in relevant:
            f = loc.finding
            if f.start > cursor:
                parts.append(joined[cursor : f.start])
            if loc.first == i:
                parts.append(substitute(f, policy))
            cursor = max(cursor, min(e, f.end))
        if cursor < e:
            parts.append(joined[cursor:e])
        out.append("".join(parts))
    return out, located


def _redact_timed(
    items: Sequence[Any], field: TimedField, policy: Policy, deadline: float | None = None
) -> tuple[tuple[Any, ...], list[tuple[Finding, float, float]]]:
    texts = [getattr(item, field.text_attr) for item in items]
    new_texts, located = redact_pieces(texts, policy, deadline=deadline)
    spans = [(loc.finding, items[loc.first].start, items[loc.last].end) for loc in located]
    out: list[Any] = []
    swallowed: set[int] = set()
    widen: dict[int, float] = {}
    if field.merge:
        for loc in located:
            if loc.last > loc.first:
                widen[loc.first] = items[loc.last].end
                swallowed.update(
                    i for i in range(loc.first + 1, loc.last + 1) if not new_texts[i].strip()
                )
    for i, item in enumerate(items):
        if i in swallowed:
            continue
        changes: dict[str, Any] = {}
        if new_texts[i] != texts[i]:
            changes[field.text_attr] = new_texts[i]
        if i in widen:
            changes["end"] = widen[i]
        out.append(msgspec.structs.replace(item, **changes) if changes else item)
    return tuple(out), spans


def _redact_metadata(
    metadata: dict[str, Any], policy: Policy, deadline: float | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Keeps scalar metadata (request ids, timings), redacts strings, drops nested values
    (the raw response and per-chunk raw responses repeat the unredacted text)."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in metadata.items():
        if value is None or isinstance(value, bool | int | float):
            kept[key] = value
        elif isinstance(value, str):
            kept[key] = redact_text(value, policy, deadline=deadline)[0]
        else:
            dropped.append(key)
    return kept, tuple(sorted(dropped))


def redact_transcript(
    transcript: Transcript,
    policy: Policy,
    *,
    timed_segments: bool = True,
    deadline: float | None = None,
) -> tuple[Transcript, RedactionReport]:
    """The transcript with every text-bearing field redacted, and the evidence of it.

    `timed_segments=False` says the segments' times are not when things were said (an engine
    that returns text only gets one segment spanning the whole file): spans then come from
    words or nowhere.

    `deadline` (a `time.monotonic()` value) bounds the whole call: past it, `RedactionTimeout`
    is raised and nothing is returned, so the caller stores and sends nothing."""
    if not policy.active:
        return transcript, RedactionReport(policy="")
    text, findings = redact_text(transcript.text, policy, deadline=deadline)
    changes: dict[str, Any] = {"text": text}
    timed: dict[str, list[tuple[Finding, float, float]]] = {}
    for field in TIMED_FIELDS:
        items = getattr(transcript, field.name)
        if items:
            changes[field.name], timed[field.name] = _redact_timed(items, field, policy, deadline)
    if "utterances" in changes:
        changes["utterances"] = tuple(
            msgspec.structs.replace(u, words=_redact_timed(u.words, _WORDS, policy, deadline)[0])
            if u.words
            else u
            for u in changes["utterances"]
        )
    metadata, dropped = _redact_metadata(transcript.engine_metadata, policy, deadline)
    changes["engine_metadata"] = metadata
    redacted = msgspec.structs.replace(transcript, **changes)
    timing: Literal["words", "segments", "none"] = "none"
    if transcript.words:
        timing = "words"
        spans = [RedactedSpan(cls=f.cls.value, start=s, end=e) for f, s, e in timed["words"]]
    elif transcript.segments and timed_segments:
        timing = "segments"
        spans = [RedactedSpan(cls=f.cls.value, start=s, end=e) for f, s, e in timed["segments"]]
    else:
        spans = [RedactedSpan(cls=f.cls.value) for f in findings]
    # Counts come from the full text (what every format shows); spans from the finest timing.
    counts = Counter(f.cls.value for f in findings)
    for span in spans:
        counts.setdefault(span.cls, 0)
    counts_by_class = {k: max(v, sum(1 for s in spans if s.cls == k)) for k, v in counts.items()}
    report = RedactionReport(
        policy=policy.spec,
        counts=dict(sorted(counts_by_class.items())),
        spans=tuple(spans),
        timing=timing,
        dropped_metadata=dropped,
    )
    return redacted, report
