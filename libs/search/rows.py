"""What the index stores of a transcript: its utterances (or segments) with word timings, and
the conversation metrics the filters need, as typed values. Pure functions.

The per-call metrics, from `Transcript.conversation` (libs/transcript/conversation.py):

- `duration`: the conversation's duration, else the transcript's (seconds);
- `talk_ratio`: the share of the talk time spoken by the agent (the speakers whose role is
  `agent`), 0..1; NULL when no speaker has that role;
- `silence_share`: the share of the call nobody speaks (`silence_ratio`), 0..1;
- `interruptions`: utterances starting while another speaker's is in progress (all speakers);
- `overlap`: seconds during which two or more speakers talk at once;
- `wpm`: words per minute of talk time, all speakers together.

Every metric but `duration` is NULL for a transcript without a conversation (one voice, no
channels or diarization), so a metric filter never matches such a call.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from libs.contracts import Conversation
from libs.transcript import Transcript
from libs.transcript.model import Word


class CallMetrics(msgspec.Struct, frozen=True, kw_only=True):
    duration: float
    talk_ratio: float | None = None
    silence_share: float | None = None
    interruptions: int | None = None
    overlap: float | None = None
    wpm: float | None = None


class IndexedUtterance(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    role: str | None
    speaker: str | None
    channel: int | None
    start: float
    end: float
    text: str
    # Flattened [from, to, from, to, ...] character offsets and [start, end, ...] seconds.
    word_chars: list[int] | None = None
    word_times: list[float] | None = None


def metrics(transcript: Transcript) -> CallMetrics:
    return conversation_metrics(transcript.conversation, transcript.duration)


def conversation_metrics(conv: Conversation | None, duration: float) -> CallMetrics:
    """The metrics of a call of `duration` seconds with conversation `conv` (the categories'
    `metric` rules use the same, so a filter and a rule of one name mean one thing)."""
    if conv is None:
        return CallMetrics(duration=duration)
    agent = [s for s in conv.speakers if s.role == "agent"]
    words = sum(s.words for s in conv.speakers)
    return CallMetrics(
        duration=conv.duration or duration,
        talk_ratio=round(sum(s.talk_ratio for s in agent), 4) if agent else None,
        silence_share=conv.silence_ratio,
        interruptions=conv.interruptions,
        overlap=conv.overlap_time,
        wpm=round(words / (conv.talk_time / 60.0), 2) if conv.talk_time > 0 else None,
    )


def align_words(text: str, words: Sequence[Word]) -> tuple[list[int], list[float]]:
    """Each word's character span in `text` (searched left to right; -1, -1 when the word is
    not in the text, e.g. redacted differently) and its times, flattened."""
    chars: list[int] = []
    times: list[float] = []
    pos = 0
    for w in words:
        token = w.word.strip()
        at = text.find(token, pos) if token else -1
        if at < 0:
            chars += (-1, -1)
        else:
            chars += (at, at + len(token))
            pos = at + len(token)
        times += (float(w.start), float(w.end))
    return chars, times


def _words_within(words: Sequence[Word], start: float, end: float, first: int) -> int:
    """The index after the last of `words[first:]` whose middle falls before `end`."""
    i = first
    while i < len(words) and (words[i].start + words[i].end) / 2 < end:
        i += 1
    return i


# A row's text at most (longer ones, e.g. a transcript without segments, are split at spaces):
# a tsvector holds at most 1 MB, and a match should point near what it found.
MAX_ROW_CHARS = 2000


def _pieces(text: str) -> list[tuple[int, int]]:
    """[from, to) pieces of `text` of at most MAX_ROW_CHARS, cut at whitespace if there is any."""
    out: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > MAX_ROW_CHARS:
        cut = text.rfind(" ", start + 1, start + MAX_ROW_CHARS)
        end = cut if cut > start else start + MAX_ROW_CHARS
        out.append((start, end))
        start = end
    out.append((start, len(text)))
    return out


def _split(row: IndexedUtterance) -> list[IndexedUtterance]:
    """The row as pieces of at most MAX_ROW_CHARS, each with its own words."""
    if len(row.text) <= MAX_ROW_CHARS:
        return [row]
    out = []
    for lo, hi in _pieces(row.text):
        chars: list[int] | None = None
        times: list[float] | None = None
        if row.word_chars is not None and row.word_times is not None:
            chars, times = [], []
            for k in range(len(row.word_chars) // 2):
                a, b = row.word_chars[2 * k], row.word_chars[2 * k + 1]
                if a >= lo and b <= hi:
                    chars += (a - lo, b - lo)
                    times += row.word_times[2 * k : 2 * k + 2]
        out.append(
            msgspec.structs.replace(row, text=row.text[lo:hi], word_chars=chars, word_times=times)
        )
    return out


def utterances(transcript: Transcript) -> list[IndexedUtterance]:
    """The rows: one per utterance with text; else one per segment (words assigned by time);
    else the whole text; any longer than MAX_ROW_CHARS in pieces. Numbered from 0."""
    rows = [piece for row in _rows(transcript) for piece in _split(row)]
    return [msgspec.structs.replace(row, seq=n) for n, row in enumerate(rows)]


def _rows(transcript: Transcript) -> list[IndexedUtterance]:
    out: list[IndexedUtterance] = []
    if transcript.utterances:
        for u in transcript.utterances:
            if not u.text.strip():
                continue
            chars, times = align_words(u.text, u.words) if u.words else (None, None)
            out.append(
                IndexedUtterance(
                    seq=len(out),
                    role=u.role,
                    speaker=u.speaker,
                    channel=u.channel,
                    start=u.start,
                    end=u.end,
                    text=u.text,
                    word_chars=chars,
                    word_times=times,
                )
            )
        return out
    words = transcript.words or ()
    if transcript.segments:
        taken = 0
        for s in transcript.segments:
            upto = _words_within(words, s.start, s.end, taken)
            mine, taken = words[taken:upto], upto
            if not s.text.strip():
                continue
            chars, times = align_words(s.text, mine) if mine else (None, None)
            out.append(
                IndexedUtterance(
                    seq=len(out),
                    role=None,
                    speaker=None,
                    channel=None,
                    start=s.start,
                    end=s.end,
                    text=s.text,
                    word_chars=chars,
                    word_times=times,
                )
            )
        return out
    if transcript.text.strip():
        chars, times = align_words(transcript.text, words) if words else (None, None)
        out.append(
            IndexedUtterance(
                seq=0,
                role=None,
                speaker=None,
                channel=None,
                start=0.0,
                end=transcript.duration,
                text=transcript.text,
                word_chars=chars,
                word_times=times,
            )
        )
    return out
