"""What an audio file's header says about it (sample rate, channels, duration), in pure Python.

Ingest sniffs uploads without loading FFmpeg, and a header read in microseconds is enough to
refuse the files whose own header says they are not worth decoding: a WAV labelled 1 Hz plans
as 106 hours. Read here: WAV (RIFF, RF64, BW64), FLAC (STREAMINFO) and Ogg Vorbis/Opus (the
identification header; the duration from the last page's granule position when the end of the
file is at hand). Anything else, or a header that does not say, gives None for that field; the
transcriber then learns the rest by decoding (libs.audio.decode).
"""

from __future__ import annotations

import struct

import msgspec

# Enough for the fmt and data chunks of a WAV behind a LIST, bext or iXML chunk of a few pages,
# and for an Ogg page of any size (at most 65,307 bytes).
HEADER_BYTES = 64 * 1024
# An Ogg file's last page starts at most this far from its end.
TAIL_BYTES = 65_307

# A WAV data chunk size writers put when they do not know it yet (streaming): "to the end".
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})
# Format tags whose samples are fixed-size frames: duration = bytes / (block_align * rate),
# whatever nAvgBytesPerSec says (FFmpeg decodes them by block, so a lying byte rate cannot
# make a long file look short). PCM, IEEE float, A-law, mu-law.
_FRAME_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
_EXTENSIBLE = 0xFFFE
_OPUS_RATE = 48_000


class Header(msgspec.Struct, frozen=True, kw_only=True):
    # None: the header does not say (or this format's header is not read here).
    sample_rate: int | None = None
    channels: int | None = None
    duration: float | None = None
    # WAV: where the samples start and how many bytes make one second (for counting a body
    # whose header left the data size open); None elsewhere.
    data_offset: int | None = None
    bytes_per_second: int | None = None


UNKNOWN = Header()


def read_header(head: bytes, *, size: int | None = None, tail: bytes = b"") -> Header:
    """The header of a file whose first bytes are `head` (`HEADER_BYTES` are enough), whose
    total size is `size` when known, and whose last `TAIL_BYTES` are `tail` when at hand."""
    try:
        if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            return _wav(head, size)
        if head[:4] == b"fLaC":
            return _flac(head)
        if head[:4] == b"OggS":
            return _ogg(head, tail)
    except (struct.error, IndexError, ValueError):
        return UNKNOWN
    return UNKNOWN


def _wav(head: bytes, size: int | None) -> Header:
    at = 12
    rf64_data_size: int | None = None
    fmt: tuple[int, int, int, int, int] | None = None
    while at + 8 <= len(head):
        chunk_id = head[at : at + 4]
        chunk_size = int.from_bytes(head[at + 4 : at + 8], "little")
        body = at + 8
        if chunk_id == b"ds64" and len(head) >= body + 16:
            rf64_data_size = int.from_bytes(head[body + 8 : body + 16], "little")
        elif chunk_id == b"fmt " and len(head) >= body + 16:
            tag, channels, rate, byte_rate, block_align = struct.unpack_from("<HHIIH", head, body)
            if tag == _EXTENSIBLE and chunk_size >= 40 and len(head) >= body + 26:
                tag = int.from_bytes(head[body + 24 : body + 26], "little")
            fmt = (tag, channels, rate, byte_rate, block_align)
        elif chunk_id == b"data":
            declared: int | None = chunk_size
            if chunk_size == 0xFFFFFFFF and rf64_data_size is not None:
                declared = rf64_data_size
            elif chunk_size in _UNKNOWN_SIZES:
                declared = None
            return _wav_header(fmt, body, declared, size)
        at = body + chunk_size + (chunk_size & 1)
    return _wav_header(fmt, None, None, size)


def _wav_header(
    fmt: tuple[int, int, int, int, int] | None,
    data_offset: int | None,
    declared: int | None,
    size: int | None,
) -> Header:
    if fmt is None:
        return UNKNOWN
    tag, channels, rate, byte_rate, block_align = fmt
    per_second = block_align * rate if tag in _FRAME_TAGS else byte_rate
    data: int | None = declared
    if data_offset is not None and size is not None:
        available = max(0, size - data_offset)
        data = available if declared is None else min(declared, available)
    duration = None
    if data is not None and per_second > 0:
        duration = data / per_second
    return Header(
        sample_rate=rate,
        channels=channels or None,
        duration=duration,
        data_offset=data_offset,
        bytes_per_second=per_second or None,
    )


def _flac(head: bytes) -> Header:
    # The first metadata block is STREAMINFO (34 bytes): sample rate in 20 bits, channels - 1
    # in 3, bits per sample - 1 in 5, total samples in 36 (0: unknown).
    if head[4] & 0x7F != 0:
        return UNKNOWN
    info = head[8:42]
    if len(info) < 18:
        return UNKNOWN
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    total = packed & ((1 << 36) - 1)
    duration = total / rate if total and rate else None
    return Header(sample_rate=rate, channels=channels, duration=duration)


def _ogg(head: bytes, tail: bytes) -> Header:
    payload = head[27 + head[26] :]
    granule = _last_granule(tail)
    if payload.startswith(b"\x01vorbis"):
        channels = payload[11]
        rate = int.from_bytes(payload[12:16], "little")
        duration = granule / rate if granule is not None and rate > 0 else None
        return Header(sample_rate=rate, channels=channels, duration=duration)
    if payload.startswith(b"OpusHead"):
        # Opus always decodes at 48 kHz; the input rate in the header is informational only.
        channels = payload[9]
        pre_skip = int.from_bytes(payload[10:12], "little")
        duration = None
        if granule is not None:
            duration = max(0, granule - pre_skip) / _OPUS_RATE
        return Header(sample_rate=_OPUS_RATE, channels=channels, duration=duration)
    return UNKNOWN


def _last_granule(tail: bytes) -> int | None:
    """The granule position of the last complete page header in `tail` (None if none)."""
    at = tail.rfind(b"OggS")
    while at != -1:
        if at + 14 <= len(tail) and tail[at + 4] == 0:
            granule = int.from_bytes(tail[at + 6 : at + 14], "little", signed=True)
            if granule >= 0:
                return granule
        at = tail.rfind(b"OggS", 0, at)
    return None
