"""Audio handling shared by ingest (sniffing uploads) and the transcriber (decoding them)."""

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
from libs.audio.sniff import SNIFF_BYTES, SUPPORTED, AudioFormat, sniff

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
