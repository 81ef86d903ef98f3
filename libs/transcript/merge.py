"""Reassemble one transcript from the transcripts of overlapping chunks of a recording.

Each chunk was cut at `cut` but heard `overlap` seconds further, so speech near a cut can come
back twice. With timings (Whisper's verbose_json, the offline engine) a segment or word belongs
to the chunk whose [start, cut) holds its start, and anything the next chunk reports that the
previous one already covered is dropped. Without timings (the gpt-4o models answer text only)
the longest run of words that ends one chunk's text and starts the next one's is kept once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec

from libs.transcript.model import EngineMetadata, Segment, Transcript, Utterance, Word

# Text-only de-duplication looks this many words back; the overlap is about a second of speech.
_MAX_TEXT_OVERLAP = 20
_NORMALISE = re.compile(r"[^\w']+")
_PART = re.compile(r" \(part \d+\)\Z")


@dataclass(frozen=True, slots=True)
class ChunkTranscript:
    """A chunk's transcript, timed from the chunk's own start; `offset` and `cut` in seconds
    of the whole recording (the last chunk's cut is the recording's end)."""

    offset: float
    cut: float
    transcript: Transcript


def merge(
    chunks: Sequence[ChunkTranscript],
    *,
    duration: float,
    timed: bool,
    metadata: EngineMetadata | None = None,
    overlapping: bool = True,
) -> Transcript:
    """`overlapping=False`: the chunks do not overlap (speech turns), so text that repeats at
    a seam was said twice and is kept."""
    if not chunks:
        raise ValueError("nothing to merge")
    first = chunks[0].transcript
    if timed:
        segments = _merge_timed(chunks)
        text = " ".join(s.text for s in segments if s.text)
    else:
        segments, text = _merge_text(chunks, overlapping=overlapping)
    words: tuple[Word, ...] | None = None
    if any(c.transcript.words is not None for c in chunks):
        words = _merge_words(chunks)
    utterances: tuple[Utterance, ...] = ()
    if any(c.transcript.utterances for c in chunks):
        utterances = _merge_utterances(chunks)
    return Transcript(
        text=text,
        language=next((c.transcript.language for c in chunks if c.transcript.language), None),
        duration=round(duration, 3),
        segments=tuple(segments),
        words=words,
        model=first.model,
        engine=first.engine,
        engine_metadata=metadata if metadata is not None else EngineMetadata(),
        utterances=utterances,
    )


class _Timed(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


T = TypeVar("T", bound=_Timed)


def _across_seams(
    chunks: Sequence[ChunkTranscript], items: Callable[[Transcript], Sequence[T]]
) -> Iterator[tuple[int, T, float, float, float]]:
    """The one seam rule for every timed field (segments, words, utterances): each item moved
    to recording time, minus what was heard twice. An item starting in a chunk's overlap is
    the next chunk's to report; one centred before what is already covered was heard by the
    previous chunk across its cut. Yields (chunk index, item, start, end, covered before it)."""
    covered = float("-inf")
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        for item in items(chunk.transcript):
            start = round(item.start + chunk.offset, 3)
            end = round(item.end + chunk.offset, 3)
            if i < last and start >= chunk.cut:
                continue  # heard in the overlap: the next chunk reports it
            if (start + end) / 2 < covered:
                continue  # the previous chunk heard this across its cut
            yield i, item, start, end, covered
            covered = max(covered, end)


def _merge_utterances(chunks: Sequence[ChunkTranscript]) -> tuple[Utterance, ...]:
    """Diarized utterances, kept like timed segments. A diarizing engine labels voices per
    request, so "A" of one chunk need not be "A" of the next: with several chunks each label
    says its part ("Speaker A (part 2)") rather than pretend to a continuity nobody checked."""
    several = len(chunks) > 1
    return tuple(
        msgspec.structs.replace(
            u,
            speaker=part_label(u.speaker, i) if several else u.speaker,
            start=start,
            end=max(start, end),
        )
        for i, u, start, end, _ in _across_seams(chunks, lambda t: t.utterances)
    )


def part_label(speaker: str, chunk: int) -> str:
    """A diarized speaker of chunk `chunk` (0-based) of several: "Speaker A (part 2)"."""
    return f"{speaker} (part {chunk + 1})"


def is_part(speaker: str) -> bool:
    """Whether a speaker label is one chunk's (`part_label`): that voice may go on, under
    another label, in the next chunk."""
    return _PART.search(speaker) is not None


def _merge_timed(chunks: Sequence[ChunkTranscript]) -> list[Segment]:
    segments: list[Segment] = []
    for _, seg, start, end, covered in _across_seams(chunks, lambda t: t.segments):
        start = max(start, covered) if covered > float("-inf") else start
        segments.append(Segment(id=len(segments), start=start, end=max(start, end), text=seg.text))
    return segments


def _merge_words(chunks: Sequence[ChunkTranscript]) -> tuple[Word, ...]:
    return tuple(
        Word(start=start, end=end, word=word.word)
        for _, word, start, end, _ in _across_seams(chunks, lambda t: t.words or ())
    )


def _merge_text(
    chunks: Sequence[ChunkTranscript], *, overlapping: bool
) -> tuple[list[Segment], str]:
    segments: list[Segment] = []
    previous: list[str] = []
    for chunk in chunks:
        tokens = chunk.transcript.text.split()
        if overlapping:
            tokens = tokens[overlap_length(previous, tokens) :]
        text = " ".join(tokens)
        if text:
            segments.append(
                Segment(
                    id=len(segments),
                    start=round(chunk.offset, 3),
                    end=round(chunk.cut, 3),
                    text=text,
                )
            )
        previous = tokens or previous
    return segments, " ".join(s.text for s in segments)


def overlap_length(before: Sequence[str], after: Sequence[str]) -> int:
    """How many leading words of `after` repeat the trailing words of `before`.

    A single repeated word counts only if it is long: "the ... the" across a cut is more often
    two words than one heard twice.
    """
    limit = min(len(before), len(after), _MAX_TEXT_OVERLAP)
    tail = [_normalise(w) for w in before[-limit:]] if limit else []
    head = [_normalise(w) for w in after[:limit]]
    for k in range(limit, 0, -1):
        if tail[-k:] == head[:k] and (k > 1 or len(head[0]) >= 5):
            return k
    return 0


def _normalise(word: str) -> str:
    return _NORMALISE.sub("", word.lower())
