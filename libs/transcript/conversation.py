"""Conversation metrics from utterance timestamps (no audio needed, so any engine qualifies).

Every figure is defined in docs/conversations.md ("Conversation metrics"); in short, with each utterance
taken as the interval [start, end) of the recording:

- talk time (per speaker): the length of the union of that speaker's utterances;
  talk ratio: a speaker's talk time over the sum of all speakers' talk times;
- silence: the part of the recording no utterance covers (silence ratio: over the duration);
- overlap: the part covered by utterances of two or more speakers at once;
- interruption: an utterance that starts while another speaker's utterance is in progress
  (credited to the speaker who starts);
- words per minute (per speaker): words / talk time in minutes (None without talk time);
- monologue: a speaker's turn, from the start of an utterance to the end of the last one of
  theirs before another speaker starts; the longest monologue is the longest such turn.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from libs.contracts import Conversation, SpeakerMetrics
from libs.transcript.model import (
    EngineMetadata,
    Segment,
    Transcript,
    Utterance,
    Word,
)

# Channel k's role when neither the job nor its key says otherwise.
DEFAULT_CHANNEL_ROLES: tuple[str, ...] = ("agent", "customer")
# Consecutive segments of one speaker, with nobody else starting in between, are one utterance
# when the pause between them is at most this long (a breath, not a turn).
UTTERANCE_GAP = 1.0
# A role map names at most this many channels (the transcriber splits at most 8).
MAX_ROLES = 8
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

_ROUND = 3
_WORDLIKE = re.compile(r"\w")


def parse_roles(value: str) -> tuple[str, ...]:
    """ "Customer, agent" -> ("customer", "agent"): the role of channel 0, 1, ...; raises
    ValueError unless 1-MAX_ROLES roles, each a letter then up to 31 letters, digits, _ or -."""
    roles = tuple(part.strip().lower() for part in value.split(","))
    if len(roles) > MAX_ROLES or not all(_ROLE.fullmatch(r) for r in roles):
        raise ValueError(
            f"channel roles are 1-{MAX_ROLES} comma-separated roles, each a letter then up to 31"
            " letters, digits, '_' or '-' (e.g. customer,agent)"
        )
    return roles


def speaker_label(label: str) -> str:
    """A diarizing engine's label as a speaker: "A" -> "Speaker A"; a name stays a name."""
    label = " ".join(label.split()) or "?"
    return f"Speaker {label}" if len(label) <= 2 else label


def channel_speaker(channel: int) -> str:
    return f"Channel {channel}"


def from_channels(
    channels: Sequence[Transcript],
    *,
    roles: Sequence[str],
    duration: float,
    metadata: EngineMetadata | None = None,
) -> Transcript:
    """One conversation from one transcript per channel (channel k = `channels[k]`, timed in
    seconds of the original recording): utterances merged by time, each with its channel, its
    speaker ("Channel k") and role `roles[k]` (none past the end of `roles`)."""
    if not channels:
        raise ValueError("no channels")
    pieces: list[Utterance] = []
    for channel, transcript in enumerate(channels):
        role = roles[channel] if channel < len(roles) else None
        pieces.extend(_channel_utterances(transcript, channel, role))
    pieces.sort(key=lambda u: (u.start, u.channel or 0, u.end))
    utterances = _join_turns(pieces)
    first = channels[0]
    words: tuple[Word, ...] | None = None
    if any(t.words is not None for t in channels):
        words = tuple(sorted((w for u in utterances for w in u.words or ()), key=_word_start))
    duration = max(duration, max((u.end for u in utterances), default=0.0))
    return Transcript(
        text=" ".join(u.text for u in utterances),
        language=next((t.language for t in channels if t.language), None),
        duration=round(duration, 3),
        segments=tuple(
            Segment(id=i, start=u.start, end=u.end, text=u.text) for i, u in enumerate(utterances)
        ),
        words=words,
        model=first.model,
        engine=first.engine,
        engine_metadata=metadata if metadata is not None else EngineMetadata(),
        utterances=utterances,
        conversation=summarize(utterances, duration=duration, method="channels"),
    )


def _word_start(word: Word) -> float:
    return word.start


def _channel_utterances(
    transcript: Transcript, channel: int, role: str | None
) -> Iterable[Utterance]:
    segments = [s for s in transcript.segments if s.text.strip()]
    if not segments and transcript.text.strip():
        # An engine that answers text only, and no chunking: one utterance for the channel.
        segments = [Segment(id=0, start=0.0, end=transcript.duration, text=transcript.text)]
    starts = [s.start for s in segments]
    owned: list[list[Word]] = [[] for _ in segments]
    for word in transcript.words or ():
        # A word belongs to the last segment that starts at or before it (a little slack for
        # engines whose word and segment clocks disagree by a frame).
        index = bisect.bisect_right(starts, word.start + 0.05) - 1
        owned[max(index, 0)].append(word)
    for segment, words in zip(segments, owned, strict=True):
        yield Utterance(
            speaker=channel_speaker(channel),
            start=round(segment.start, 3),
            end=round(max(segment.start, segment.end), 3),
            text=" ".join(segment.text.split()),
            role=role,
            channel=channel,
            words=tuple(words) if transcript.words is not None else None,
        )


def _join_turns(ordered: Sequence[Utterance]) -> tuple[Utterance, ...]:
    joined: list[Utterance] = []
    for utterance in ordered:
        last = joined[-1] if joined else None
        if (
            last is not None
            and last.speaker == utterance.speaker
            and utterance.start - last.end <= UTTERANCE_GAP
        ):
            joined[-1] = Utterance(
                speaker=last.speaker,
                start=last.start,
                end=max(last.end, utterance.end),
                text=f"{last.text} {utterance.text}",
                role=last.role,
                channel=last.channel,
                words=None
                if last.words is None and utterance.words is None
                else (*(last.words or ()), *(utterance.words or ())),
            )
        else:
            joined.append(utterance)
    return tuple(joined)


def summarize(utterances: Sequence[Utterance], *, duration: float, method: str) -> Conversation:
    ordered = sorted(utterances, key=lambda u: (u.start, u.end))
    speakers: dict[str, list[Utterance]] = {}
    for utterance in ordered:
        speakers.setdefault(utterance.speaker, []).append(utterance)
    talk = {name: _union_length(_intervals(items)) for name, items in speakers.items()}
    total_talk = sum(talk.values())
    monologues = _monologues(ordered)
    interruptions = _interruptions(ordered)
    covered = _union_length(_intervals(ordered))
    duration = max(duration, max((u.end for u in ordered), default=0.0))
    silence = max(0.0, duration - covered)
    per_speaker = []
    for name, items in speakers.items():
        words = sum(_word_count(u) for u in items)
        seconds = talk[name]
        per_speaker.append(
            SpeakerMetrics(
                speaker=name,
                role=items[0].role,
                channel=items[0].channel,
                utterances=len(items),
                words=words,
                talk_time=round(seconds, _ROUND),
                talk_ratio=round(seconds / total_talk, 4) if total_talk > 0 else 0.0,
                words_per_minute=round(words / (seconds / 60), 1) if seconds > 0 else None,
                longest_monologue=round(monologues.get(name, 0.0), _ROUND),
                interruptions=interruptions.get(name, 0),
            )
        )
    return Conversation(
        method=method,
        duration=round(duration, _ROUND),
        speakers=tuple(sorted(per_speaker, key=_speaker_order)),
        talk_time=round(covered, _ROUND),
        silence_time=round(silence, _ROUND),
        silence_ratio=round(silence / duration, 4) if duration > 0 else 0.0,
        overlap_time=round(_overlap_length(speakers), _ROUND),
        interruptions=sum(interruptions.values()),
        longest_monologue=round(max(monologues.values(), default=0.0), _ROUND),
    )


def _speaker_order(metrics: SpeakerMetrics) -> tuple[int, str]:
    return (metrics.channel if metrics.channel is not None else 1 << 30, metrics.speaker)


def _word_count(utterance: Utterance) -> int:
    if utterance.words is not None:
        return len(utterance.words)
    # Tokens with a letter or digit: a lone "&" or "-" is not a word spoken.
    return sum(1 for token in utterance.text.split() if _WORDLIKE.search(token))


def _intervals(utterances: Iterable[Utterance]) -> list[tuple[float, float]]:
    return [(u.start, u.end) for u in utterances if u.end > u.start]


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _union_length(intervals: Iterable[tuple[float, float]]) -> float:
    return sum(end - start for start, end in _union(intervals))


def _overlap_length(speakers: dict[str, list[Utterance]]) -> float:
    """Time during which two or more speakers talk: a sweep over each speaker's own union, so
    one speaker's overlapping utterances (an engine artefact) never count as overlap."""
    events: list[tuple[float, int]] = []
    for items in speakers.values():
        for start, end in _union(_intervals(items)):
            events.append((start, 1))
            events.append((end, -1))
    # Ends before starts at the same instant: touching turns are not an overlap.
    events.sort(key=lambda e: (e[0], e[1]))
    overlap, active, previous = 0.0, 0, 0.0
    for time, step in events:
        if active >= 2:
            overlap += time - previous
        active += step
        previous = time
    return overlap


def _interruptions(ordered: Sequence[Utterance]) -> dict[str, int]:
    """Per speaker, how many of their utterances start strictly inside another speaker's."""
    counts: dict[str, int] = {}
    # Each speaker's latest end among utterances that started strictly earlier (ordered by start,
    # so one pass, with ties held back until the start moves on).
    ends: dict[str, float] = {}
    pending: list[Utterance] = []
    for utterance in ordered:
        if pending and pending[0].start < utterance.start:
            for done in pending:
                ends[done.speaker] = max(ends.get(done.speaker, done.end), done.end)
            pending = []
        if any(
            speaker != utterance.speaker and end > utterance.start for speaker, end in ends.items()
        ):
            counts[utterance.speaker] = counts.get(utterance.speaker, 0) + 1
        pending.append(utterance)
    return counts


def _monologues(ordered: Sequence[Utterance]) -> dict[str, float]:
    longest: dict[str, float] = {}
    current: Utterance | None = None
    turn_start = turn_end = 0.0
    for utterance in ordered:
        if current is not None and utterance.speaker == current.speaker:
            turn_end = max(turn_end, utterance.end)
            continue
        if current is not None:
            _keep_longest(longest, current.speaker, turn_end - turn_start)
        current, turn_start, turn_end = utterance, utterance.start, utterance.end
    if current is not None:
        _keep_longest(longest, current.speaker, turn_end - turn_start)
    return longest


def _keep_longest(longest: dict[str, float], speaker: str, seconds: float) -> None:
    longest[speaker] = max(longest.get(speaker, 0.0), seconds)
