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

A conversation (utterances, each with its speaker: a channel of a call, or a voice the engine
told apart) is redacted speaker by speaker: each speaker's utterances, and their words, joined
in order as one text whatever the pauses and whoever spoke in between, so the agent's "got it"
in the middle of the card number the customer reads does not split it. The merged views (the
text, the segments, the time-ordered words) are then built from those redacted utterances, so
every view, and the audio spans, come from one redaction. A diarizing engine labels voices per
request, so in a long recording each chunk's voices are their own speakers ("Speaker A (part
2)", libs.transcript.merge): a number said across a chunk boundary would be two halves of two
speakers, so their digit runs at the edges of each part are masked too (libs.redaction.seams).

The work is linear in the text: each finding is located among the pieces by bisection, and
the pieces are rebuilt in one sweep.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import msgspec

from libs.redaction.detect import Finding, detect
from libs.redaction.policy import EntityClass, Policy
from libs.redaction.seams import Finder, with_edges
from libs.transcript.merge import is_part
from libs.transcript.model import EngineMetadata, Segment, Transcript, Utterance, Word

Timing = Literal["words", "segments", "none"]


class TimedField(NamedTuple):
    name: str  # attribute of Transcript holding a tuple of timed structs (or None)
    text_attr: str  # the struct's text attribute
    merge: bool  # drop items a finding swallowed whole, widening the first (words)


TIMED_FIELDS: tuple[TimedField, ...] = (
    TimedField("segments", "text", merge=False),
    TimedField("words", "word", merge=True),
    # A conversation's turns (issue #13): redacted per speaker, see _redact_by_speaker.
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
    timing: Timing = "none"
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


# Every entry point takes `deadline`: a `time.monotonic()` value after which detection raises
# `RedactionTimeout` (libs.redaction.deadline), so the caller stores and sends nothing.


def redact_text(
    text: str, policy: Policy, *, deadline: float | None = None
) -> tuple[str, list[Finding]]:
    return _Pass.of(policy, deadline).text(text)


def redact_pieces(
    pieces: Sequence[str], policy: Policy, *, deadline: float | None = None
) -> tuple[list[str], list[_Located]]:
    """Redacts pieces (segment texts, words) as one text joined by spaces, so a value said
    across pieces is found; returns the new pieces (a swallowed piece becomes "") and where
    each finding lies."""
    return _Pass.of(policy, deadline).pieces(pieces)


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
    words or nowhere."""
    if not policy.active:
        return transcript, RedactionReport(policy="")
    return _redact(transcript, _Pass.of(policy, deadline), timed_segments)


def redact_chunk(
    transcript: Transcript, policy: Policy, *, deadline: float | None = None
) -> Transcript:
    """A chunk's transcript as it may be saved for resuming (libs.redaction.seams): values
    replaced by entity placeholders whatever the job's substitution (the merged transcript's
    redaction finds them again), and every digit run at the chunk's edges masked too, since it
    may be part of a value said across the cut."""
    if not policy.active:
        return transcript
    placeholders = msgspec.structs.replace(policy, substitution="entity")
    seams = _Pass(placeholders, with_edges(policy.classes, deadline), deadline)
    return _redact(transcript, seams, True)[0]


class _Located(NamedTuple):
    finding: Finding
    first: int  # index of the first and last piece the finding touches
    last: int


# (finding, start, end): a finding and the times of the items it covers.
_Timed = tuple[Finding, float, float]


@dataclass(frozen=True, slots=True)
class _Pass:
    """One redaction: the policy (classes, substitution) and how values are found."""

    policy: Policy
    find: Finder
    deadline: float | None = None

    @classmethod
    def of(cls, policy: Policy, deadline: float | None = None) -> _Pass:
        classes = policy.classes
        return cls(policy, lambda text: detect(text, classes, deadline=deadline), deadline)

    def at_seams(self) -> _Pass:
        """This pass, also masking the digit runs at the text's edges (libs.redaction.seams):
        for a voice that a chunk boundary may have cut."""
        edges = with_edges(self.policy.classes, self.deadline)
        return _Pass(self.policy, edges, self.deadline)

    def text(self, text: str) -> tuple[str, list[Finding]]:
        findings = self.find(text)
        return _replace(text, findings, self.policy), findings

    def pieces(self, pieces: Sequence[str]) -> tuple[list[str], list[_Located]]:
        starts: list[int] = []
        at = 0
        for piece in pieces:
            starts.append(at)
            at += len(piece) + 1
        joined = " ".join(pieces)
        findings = self.find(joined)
        if not findings:
            return list(pieces), []
        located = [_locate(f, starts, pieces) for f in findings]
        return _rewrite(pieces, starts, joined, located, self.policy), located


def redact_field(value: str | None, policy: Policy) -> str | None:
    """A free-text field a caller sends with a job (the `prompt`) under the job's policy, before
    it is stored or put on the stream: a card number a client pastes into the prompt is as
    sensitive as one said in the call. None and inactive policies leave it as sent."""
    if value is None or not policy.active:
        return value
    return redact_text(value, policy)[0]


def _replace(text: str, findings: Sequence[Finding], policy: Policy) -> str:
    out: list[str] = []
    at = 0
    for f in findings:
        out.append(text[at : f.start])
        out.append(substitute(f, policy))
        at = f.end
    out.append(text[at:])
    return "".join(out)


def _locate(f: Finding, starts: Sequence[int], pieces: Sequence[str]) -> _Located:
    first = max(0, bisect.bisect_right(starts, f.start) - 1)
    if starts[first] + len(pieces[first]) <= f.start:
        first += 1  # the finding starts on the space after this piece
    last = max(first, bisect.bisect_left(starts, f.end) - 1)
    return _Located(f, first, last)


def _rewrite(
    pieces: Sequence[str],
    starts: Sequence[int],
    joined: str,
    located: Sequence[_Located],
    policy: Policy,
) -> list[str]:
    """Each piece with the parts of findings inside it replaced: the substitution goes in the
    piece where a finding starts, the rest of it is removed. One sweep (findings are ordered
    and never overlap)."""
    out: list[str] = []
    k = 0
    for i, piece in enumerate(pieces):
        s, e = starts[i], starts[i] + len(piece)
        while k < len(located) and located[k].finding.end <= s:
            k += 1
        parts: list[str] = []
        cursor = s
        j = k
        while j < len(located) and located[j].finding.start < e:
            loc = located[j]
            if loc.finding.start > cursor:
                parts.append(joined[cursor : loc.finding.start])
            if loc.first == i:
                parts.append(substitute(loc.finding, policy))
            cursor = max(cursor, min(e, loc.finding.end))
            j += 1
        if cursor == s and not parts:
            out.append(piece)
            continue
        if cursor < e:
            parts.append(joined[cursor:e])
        out.append("".join(parts))
    return out


def _redact_timed(
    items: Sequence[Any], field: TimedField, p: _Pass
) -> tuple[list[tuple[int, Any]], list[_Timed]]:
    """The items redacted as one text: (index of the original item, new item) for every item
    kept, and the times each finding covers. With `field.merge`, items a finding swallowed
    whole are dropped and the first one widened to the last one's end."""
    texts = [getattr(item, field.text_attr) for item in items]
    new_texts, located = p.pieces(texts)
    spans = [(loc.finding, items[loc.first].start, items[loc.last].end) for loc in located]
    swallowed: set[int] = set()
    widen: dict[int, float] = {}
    if field.merge:
        for loc in located:
            if loc.last > loc.first:
                widen[loc.first] = items[loc.last].end
                swallowed.update(
                    i for i in range(loc.first + 1, loc.last + 1) if not new_texts[i].strip()
                )
    out: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        if i in swallowed:
            continue
        changes: dict[str, Any] = {}
        if new_texts[i] != texts[i]:
            changes[field.text_attr] = new_texts[i]
        if i in widen:
            changes["end"] = widen[i]
        out.append((i, msgspec.structs.replace(item, **changes) if changes else item))
    return out, spans


def _redact(
    transcript: Transcript, p: _Pass, timed_segments: bool
) -> tuple[Transcript, RedactionReport]:
    if transcript.utterances:
        redacted, evidence = _redact_by_speaker(transcript, p, timed_segments)
    else:
        redacted, evidence = _redact_flat(transcript, p, timed_segments)
    # Metadata is not speech: its strings (request ids, model names) get the detectors only.
    metadata, dropped = _redact_metadata(transcript.engine_metadata, _Pass.of(p.policy, p.deadline))
    redacted = msgspec.structs.replace(redacted, engine_metadata=metadata)
    return redacted, evidence.report(p.policy, dropped)


@dataclass(frozen=True, slots=True)
class _Evidence:
    findings: list[Finding]  # in the text every format shows
    spans: list[RedactedSpan]  # from the finest timing there is
    timing: Timing

    @classmethod
    def choose(
        cls,
        findings: list[Finding],
        words: list[_Timed] | None,
        segments: list[_Timed] | None,
    ) -> _Evidence:
        """Spans from word times if there are words (plus, failing closed, the segments of any
        value the words did not show), else from segment times if they are times, else
        untimed."""
        if words is not None:
            timed = sorted(words + _uncovered(segments or [], words), key=lambda t: t[1])
            return cls(findings, _spans(timed), "words")
        if segments is not None:
            return cls(findings, _spans(segments), "segments")
        return cls(findings, [RedactedSpan(cls=f.cls.value) for f in findings], "none")

    def report(self, policy: Policy, dropped: tuple[str, ...]) -> RedactionReport:
        # Counts come from the full text (what every format shows), at least one per span.
        counts = Counter(f.cls.value for f in self.findings)
        per_span = Counter(s.cls for s in self.spans)
        merged = {k: max(counts[k], per_span[k]) for k in counts.keys() | per_span.keys()}
        return RedactionReport(
            policy=policy.spec,
            counts=dict(sorted(merged.items())),
            spans=tuple(self.spans),
            timing=self.timing,
            dropped_metadata=dropped,
        )


def _uncovered(coarse: list[_Timed], fine: list[_Timed]) -> list[_Timed]:
    """The coarse spans (segments) that no fine span (words) overlaps."""
    ordered = sorted((s, e) for _, s, e in fine)
    starts = [s for s, _ in ordered]
    reach: list[float] = []  # the latest end among the fine spans up to each index
    for _, e in ordered:
        reach.append(max(e, reach[-1]) if reach else e)
    out = []
    for span in coarse:
        before = bisect.bisect_left(starts, span[2])
        if before == 0 or reach[before - 1] <= span[1]:
            out.append(span)
    return out


def _spans(timed: list[_Timed]) -> list[RedactedSpan]:
    return [RedactedSpan(cls=f.cls.value, start=s, end=e) for f, s, e in timed]


def _redact_flat(
    transcript: Transcript, p: _Pass, timed_segments: bool
) -> tuple[Transcript, _Evidence]:
    """One voice (or voices nobody told apart): each field redacted as one text."""
    text, findings = p.text(transcript.text)
    changes: dict[str, Any] = {"text": text}
    timed: dict[str, list[_Timed]] = {}
    for field in TIMED_FIELDS:
        items = getattr(transcript, field.name)
        if items:
            kept, timed[field.name] = _redact_timed(items, field, p)
            changes[field.name] = tuple(item for _, item in kept)
    evidence = _Evidence.choose(
        findings,
        timed.get("words") if transcript.words else None,
        timed.get("segments") if transcript.segments and timed_segments else None,
    )
    return msgspec.structs.replace(transcript, **changes), evidence


def _redact_by_speaker(
    transcript: Transcript, p: _Pass, timed_segments: bool
) -> tuple[Transcript, _Evidence]:
    """A conversation, speaker by speaker; the merged views rebuilt from the result."""
    utterances = transcript.utterances
    owned = _words_per_utterance(transcript)
    texts = [u.text for u in utterances]
    words: list[list[Word]] = [[] for _ in utterances]
    findings: list[Finding] = []
    turn_spans: list[_Timed] = []
    word_spans: list[_Timed] = []
    for turns in _turns_by_speaker(utterances):
        q = p.at_seams() if is_part(utterances[turns[0]].speaker) else p
        new_texts, located = q.pieces([utterances[i].text for i in turns])
        for i, text in zip(turns, new_texts, strict=True):
            texts[i] = text
        findings += [loc.finding for loc in located]
        turn_spans += [
            (loc.finding, utterances[turns[loc.first]].start, utterances[turns[loc.last]].end)
            for loc in located
        ]
        said = [(i, w) for i in turns for w in owned[i]]
        if said:
            kept, spans = _redact_timed([w for _, w in said], _WORDS, q)
            word_spans += spans
            for k, word in kept:
                words[said[k][0]].append(word)
    redacted = tuple(_utterance(u, texts[i], words[i]) for i, u in enumerate(utterances))
    merged_words = None
    if transcript.words is not None:
        merged_words = tuple(sorted((w for ws in words for w in ws), key=_start))
    evidence = _Evidence.choose(
        findings,
        word_spans if any(owned) else None,
        turn_spans if timed_segments else None,
    )
    return msgspec.structs.replace(
        transcript,
        text=" ".join(u.text for u in redacted if u.text.strip()),
        segments=_segments(transcript, redacted),
        words=merged_words,
        utterances=redacted,
    ), evidence


def _start(item: Word) -> float:
    return item.start


def _turns_by_speaker(utterances: Sequence[Utterance]) -> list[list[int]]:
    """Indexes of each speaker's utterances, in time order, speakers by first appearance."""
    speakers: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        speakers.setdefault(u.speaker, []).append(i)
    return [sorted(turns, key=lambda i: utterances[i].start) for turns in speakers.values()]


def _words_per_utterance(transcript: Transcript) -> list[tuple[Word, ...]]:
    """Each utterance's words: its own, or else the transcript's words, each given to the last
    utterance that starts at or before it (so every word has a speaker)."""
    utterances = transcript.utterances
    if all(u.words is not None for u in utterances) or not transcript.words:
        return [u.words or () for u in utterances]
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].start)
    starts = [utterances[i].start for i in order]
    owned: list[list[Word]] = [[] for _ in utterances]
    for word in transcript.words:
        at = max(0, bisect.bisect_right(starts, word.start + 0.05) - 1)
        owned[order[at]].append(word)
    return [tuple(ws) for ws in owned]


def _utterance(u: Utterance, text: str, words: list[Word]) -> Utterance:
    new_words = None if u.words is None else tuple(words)
    if text == u.text and new_words == u.words:
        return u
    return msgspec.structs.replace(u, text=text, words=new_words)


def _segments(transcript: Transcript, redacted: Sequence[Utterance]) -> tuple[Segment, ...]:
    """The segments of a conversation from its redacted utterances: one segment per utterance
    keeps its own times and id with the utterance's new text; otherwise one segment per
    utterance. No segments stay none."""
    old = transcript.segments
    if not old:
        return ()
    if len(old) == len(redacted) and all(
        s.text.split() == u.text.split() for s, u in zip(old, transcript.utterances, strict=True)
    ):
        return tuple(
            s if s.text == u.text else msgspec.structs.replace(s, text=u.text)
            for s, u in zip(old, redacted, strict=True)
        )
    return tuple(
        Segment(id=i, start=u.start, end=u.end, text=u.text) for i, u in enumerate(redacted)
    )


def _redact_metadata(metadata: EngineMetadata, p: _Pass) -> tuple[EngineMetadata, tuple[str, ...]]:
    """Keeps scalar metadata (request ids, timings), redacts strings, drops the nested fields
    (`EngineMetadata.NESTED`: the raw response and the per-chunk and per-channel entries
    repeat the unredacted text) and names the ones that were set."""
    dropped = tuple(n for n in sorted(EngineMetadata.NESTED) if getattr(metadata, n) is not None)
    changes: dict[str, object] = dict.fromkeys(dropped)
    for name in metadata.__struct_fields__:
        value = getattr(metadata, name)
        if name not in EngineMetadata.NESTED and isinstance(value, str):
            changes[name] = p.text(value)[0]
    return msgspec.structs.replace(metadata, **changes), dropped
