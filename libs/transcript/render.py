"""Render a `Transcript` to the downloadable formats: json, txt, srt, vtt.

Every renderer returns UTF-8 bytes ready to store or serve. Cue times are rounded to the
millisecond once, as integers, so a cue can never end before it starts and 59.9996 s becomes
00:01:00.000 instead of 00:00:59.1000.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

import msgspec

from libs.transcript.model import Transcript

OutputFormatName = Literal["json", "txt", "srt", "vtt"]
Renderer = Callable[[Transcript], bytes]

_BLANK_LINES = re.compile(r"\n\s*\n")


class OutputFormat(NamedTuple):
    render: Renderer
    content_type: str
    extension: str


def render_json(transcript: Transcript) -> bytes:
    # Deterministic order sorts the keys of dicts (the raw response), so equal transcripts are
    # equal bytes (handy for ETags and for diffing stored results); Struct fields keep their
    # order (EngineMetadata's are alphabetical, the order of the dict it replaced).
    return msgspec.json.encode(transcript, order="deterministic")


def render_txt(transcript: Transcript) -> bytes:
    if transcript.utterances:
        # A conversation: one "Agent: text" line per utterance, in time order.
        lines = [
            f"{u.label}: {text}"
            for u in transcript.utterances
            if (text := " ".join(u.text.split()))
        ]
        return "".join(f"{line}\n" for line in lines).encode()
    text = transcript.text.strip()
    # An empty transcript is an empty file rather than a lone newline.
    return f"{text}\n".encode() if text else b""


def render_srt(transcript: Transcript) -> bytes:
    # SubRip has no speaker markup: a conversation's cues start with "Agent: ".
    blocks = [
        f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n"
        f"{f'{speaker}: ' if speaker else ''}{text}\n"
        for index, (start, end, text, speaker) in enumerate(_cues(transcript), start=1)
    ]
    return "\n".join(blocks).encode()


def render_vtt(transcript: Transcript) -> bytes:
    # A conversation's cues are WebVTT voice spans: "<v Agent>text".
    blocks = [
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n"
        f"{_vtt_voice(speaker)}{_vtt_escape(text)}\n"
        for start, end, text, speaker in _cues(transcript)
    ]
    return "\n".join(["WEBVTT\n", *blocks]).encode()


FORMATS: Mapping[OutputFormatName, OutputFormat] = MappingProxyType(
    {
        "json": OutputFormat(render_json, "application/json", "json"),
        "txt": OutputFormat(render_txt, "text/plain; charset=utf-8", "txt"),
        "srt": OutputFormat(render_srt, "application/x-subrip; charset=utf-8", "srt"),
        "vtt": OutputFormat(render_vtt, "text/vtt; charset=utf-8", "vtt"),
    }
)


def render(transcript: Transcript, fmt: OutputFormatName) -> bytes:
    return FORMATS[fmt].render(transcript)


def _cues(transcript: Transcript) -> Iterator[tuple[int, int, str, str | None]]:
    """(start ms, end ms, text, speaker label) per cue: one per utterance of a conversation,
    else one per segment, or one for the whole text (speaker None)."""
    if transcript.utterances:
        for utterance in transcript.utterances:
            text = _cue_text(utterance.text)
            if text:
                start = _milliseconds(utterance.start)
                yield start, max(start, _milliseconds(utterance.end)), text, utterance.label
        return
    if transcript.segments:
        for segment in transcript.segments:
            text = _cue_text(segment.text)
            # A cue with no text would end the block early (the blank line is the separator).
            if text:
                start = _milliseconds(segment.start)
                yield start, max(start, _milliseconds(segment.end)), text, None
        return
    text = _cue_text(transcript.text)
    if text:
        yield 0, _milliseconds(transcript.duration), text, None


def _cue_text(text: str) -> str:
    # Blank lines inside a cue would be read as the end of the cue by every player.
    return _BLANK_LINES.sub("\n", text.strip())


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup, so & and < must be escaped; escaping > as well defuses "-->",
    # which is forbidden anywhere in a cue's text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_voice(speaker: str | None) -> str:
    if not speaker:
        return ""
    # The annotation ends at ">" and is itself escaped text; a line break cannot be in it.
    name = " ".join(_vtt_escape(speaker).split())
    return f"<v {name}>" if name else ""


def _milliseconds(seconds: float) -> int:
    # Half-up rounding on the integer millisecond, so carries into seconds, minutes and hours
    # happen in integer arithmetic. Engines should never produce negative or non-finite times;
    # if one does, 0 keeps the file valid instead of failing the whole download.
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return math.floor(seconds * 1000 + 0.5)


def _timestamp(milliseconds: int, separator: str) -> str:
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"
