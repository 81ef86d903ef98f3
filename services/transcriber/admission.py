"""Refusing, before any engine work, a downloaded recording that is too long or not at a real
sample rate (libs.audio.limits): a permanent failure with code `audio_too_long` or
`unsupported_sample_rate`, not ten retries that each decode it again.

Ingest refused what the header told at submit; events from before that, replays, and files
whose header does not tell are judged here: first the header (pure Python for WAV, FLAC and Ogg,
FFmpeg's reading of any other container), then, when the container gives no duration, by
decoding it, which stops as soon as the limit is passed. A container whose duration is wrong is
caught later, while the long-audio path decodes it (`frame_energies(max_seconds=...)`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.audio.decode import UndecodableAudio, declared_header, decoded_duration
from libs.audio.header import HEADER_BYTES, TAIL_BYTES, Header, read_header
from libs.audio.limits import AudioLimits, AudioRefused
from services.transcriber.engines import PermanentEngineError


async def admit(audio: Path, limits: AudioLimits) -> None:
    """Raise `PermanentEngineError` (`audio_too_long`, `unsupported_sample_rate`) for a
    recording over the limits; undecodable audio passes (the engine's answer is the verdict)."""
    try:
        await asyncio.to_thread(check, audio, limits)
    except AudioRefused as exc:
        raise PermanentEngineError(exc.detail, code=exc.code) from exc


def check(audio: Path, limits: AudioLimits) -> None:
    """Blocking: raise `AudioRefused` for a recording over the limits."""
    header = _file_header(audio)
    try:
        if header.sample_rate is None or header.duration is None:
            ffmpeg = declared_header(audio)
            header = Header(
                sample_rate=header.sample_rate or ffmpeg.sample_rate,
                duration=header.duration if header.duration is not None else ffmpeg.duration,
            )
        limits.check(header)
        if header.duration is None:
            decoded_duration(audio, limit=limits.max_seconds)
    except UndecodableAudio:
        return


def _file_header(audio: Path) -> Header:
    with audio.open("rb") as fh:
        head = fh.read(HEADER_BYTES)
        size = audio.stat().st_size
        tail = b""
        if head[:4] == b"OggS":
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read(TAIL_BYTES)
    return read_header(head, size=size, tail=tail)
