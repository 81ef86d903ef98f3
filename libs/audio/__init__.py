"""Audio handling shared by ingest (sniffing uploads) and the transcriber (decoding them).

The decoding names load lazily: importing PyAV maps FFmpeg's libraries (~16 MB of RSS), and
ingest only sniffs, so it should not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from libs.audio.sniff import SNIFF_BYTES, SUPPORTED, AudioFormat, sniff

if TYPE_CHECKING:
    from libs.audio.decode import (
        DEFAULT_CHUNK_SAMPLES,
        SAMPLE_RATE,
        SAMPLE_WIDTH,
        AudioInfo,
        UndecodableAudio,
        iter_pcm,
        probe,
        probe_duration,
    )

_DECODE_NAMES = frozenset(
    {
        "DEFAULT_CHUNK_SAMPLES",
        "SAMPLE_RATE",
        "SAMPLE_WIDTH",
        "AudioInfo",
        "UndecodableAudio",
        "iter_pcm",
        "probe",
        "probe_duration",
    }
)


def __getattr__(name: str) -> Any:
    if name in _DECODE_NAMES:
        from libs.audio import decode

        return getattr(decode, name)
    raise AttributeError(f"module 'libs.audio' has no attribute {name!r}")


__all__ = [
    "DEFAULT_CHUNK_SAMPLES",
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "SNIFF_BYTES",
    "SUPPORTED",
    "AudioFormat",
    "AudioInfo",
    "UndecodableAudio",
    "iter_pcm",
    "probe",
    "probe_duration",
    "sniff",
]
