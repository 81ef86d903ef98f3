"""Recognise an audio container from its first bytes.

Uploads are classified by content, never by the client's file name or Content-Type: those are
whatever the dialler or browser felt like sending. Only containers the decoder (PyAV) handles are
recognised, so ``None`` means "reject with 415" rather than "try anyway".
"""

from __future__ import annotations

import msgspec

# Every signature below fits in this many bytes (the ftyp compatible-brand list and the EBML
# DocType are the farthest reaching). Callers read this much before calling `sniff`.
SNIFF_BYTES = 64


class AudioFormat(msgspec.Struct, frozen=True):
    # Without the dot; used verbatim in object keys, so always lower-case ASCII.
    ext: str
    content_type: str


WAV = AudioFormat("wav", "audio/wav")
MP3 = AudioFormat("mp3", "audio/mpeg")
AAC = AudioFormat("aac", "audio/aac")
M4A = AudioFormat("m4a", "audio/mp4")
MP4 = AudioFormat("mp4", "audio/mp4")
THREE_GP = AudioFormat("3gp", "audio/3gpp")
THREE_G2 = AudioFormat("3g2", "audio/3gpp2")
# RFC 7845 recommends .opus for Ogg Opus; RFC 5334's codecs parameter says which codec is inside.
OGG_OPUS = AudioFormat("opus", "audio/ogg; codecs=opus")
OGG_VORBIS = AudioFormat("ogg", "audio/ogg; codecs=vorbis")
OGG = AudioFormat("ogg", "audio/ogg")
FLAC = AudioFormat("flac", "audio/flac")
WEBM = AudioFormat("webm", "audio/webm")
MATROSKA = AudioFormat("mka", "audio/x-matroska")
AMR = AudioFormat("amr", "audio/amr")
AMR_WB = AudioFormat("awb", "audio/amr-wb")

SUPPORTED: tuple[AudioFormat, ...] = (
    WAV, MP3, AAC, M4A, MP4, THREE_GP, THREE_G2, OGG_OPUS, OGG_VORBIS, OGG, FLAC, WEBM, MATROSKA,
    AMR, AMR_WB,
)  # fmt: skip

_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9", b"mp41", b"mp42",
     b"mp71", b"avc1", b"dash", b"mmp4", b"MSNV", b"NDAS", b"f4v "}
)  # fmt: skip
# Android recorders and MMS write these; the audio inside is AMR or AAC, both decodable.
_3GP_PREFIX = b"3gp"
_3G2_PREFIX = b"3g2"

# Values of the 2-bit version and layer fields of an MPEG audio frame header (ISO 11172-3).
_MPEG_VERSION_RESERVED = 0b01
_MPEG_LAYER_III = 0b01
# ADTS sampling-frequency indexes 13..15 are reserved.
_ADTS_MAX_SAMPLING_INDEX = 12


def sniff(head: bytes | bytearray | memoryview) -> AudioFormat | None:
    """Classify the first bytes of a file; `SNIFF_BYTES` bytes are enough, fewer may not be."""
    data = bytes(head[:SNIFF_BYTES])
    if len(data) < 4:
        return None
    if data[:4] in (b"RIFF", b"RF64", b"BW64") and data[8:12] == b"WAVE":
        return WAV
    if data[:4] == b"fLaC":
        return FLAC
    if data[:4] == b"OggS":
        return _sniff_ogg(data)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return _sniff_ebml(data)
    if data.startswith(b"#!AMR-WB\n"):
        return AMR_WB
    if data.startswith(b"#!AMR\n"):
        return AMR
    if data[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    # An ID3v2 tag is almost always in front of MP3; the version byte check rejects text that
    # merely starts with "ID3".
    if data[:3] == b"ID3" and len(data) >= 10 and data[3] in (2, 3, 4) and data[4] != 0xFF:
        return MP3
    if _is_mpeg_audio_frame(data):
        return MP3
    if _is_adts_frame(data):
        return AAC
    return None


def _sniff_ogg(data: bytes) -> AudioFormat:
    # The first page carries exactly the codec's identification header, which starts right after
    # the 27-byte page header and its segment table.
    if len(data) < 27:
        return OGG
    payload = data[27 + data[26] :]
    if payload.startswith(b"OpusHead"):
        return OGG_OPUS
    if payload.startswith(b"\x01vorbis"):
        return OGG_VORBIS
    return OGG


def _sniff_ebml(data: bytes) -> AudioFormat:
    # The DocType element (ID 0x4282) says "webm" or "matroska"; its position inside the EBML
    # header varies by muxer, so find it rather than assume an offset.
    at = data.find(b"\x42\x82", 4)
    while at != -1:
        size, width = _read_vint(data, at + 2)
        if size is not None:
            doctype = data[at + 2 + width : at + 2 + width + size]
            if doctype == b"webm":
                return WEBM
            if doctype == b"matroska":
                return MATROSKA
        at = data.find(b"\x42\x82", at + 1)
    # Both are Matroska; without a readable DocType the generic name is the honest one.
    return MATROSKA


def _read_vint(data: bytes, at: int) -> tuple[int | None, int]:
    """Decode an EBML variable-length size: the count of leading zero bits gives the width."""
    if at >= len(data) or data[at] == 0:
        return None, 1
    first = data[at]
    width = 8 - first.bit_length() + 1
    if at + width > len(data):
        return None, width
    value = first & ((1 << (8 - width)) - 1)
    for byte in data[at + 1 : at + width]:
        value = (value << 8) | byte
    return value, width


def _sniff_ftyp(data: bytes) -> AudioFormat | None:
    box_size = int.from_bytes(data[:4], "big")
    # A real ftyp box holds at least major brand + minor version (16 bytes in all).
    if box_size < 16:
        return None
    major = data[8:12]
    compatible = [data[i : i + 4] for i in range(16, min(box_size, len(data)) - 3, 4)]
    for brand in (major, *compatible):
        if brand in _M4A_BRANDS:
            return M4A
        if brand.startswith(_3GP_PREFIX):
            return THREE_GP
        if brand.startswith(_3G2_PREFIX):
            return THREE_G2
        if brand in _MP4_BRANDS:
            return MP4
    # QuickTime, HEIF, AVIF and friends also use ftyp; they are not audio uploads.
    return None


def _is_mpeg_audio_frame(data: bytes) -> bool:
    """An MPEG-1/2/2.5 Layer III frame header with no reserved field values.

    Only a sync word plus sane fields can be checked in a 64-byte head (the next frame is hundreds
    of bytes away), so every reserved value is rejected to keep random binary from passing.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version = (data[1] >> 3) & 0b11
    layer = (data[1] >> 1) & 0b11
    bitrate_index = data[2] >> 4
    sampling_index = (data[2] >> 2) & 0b11
    emphasis = data[3] & 0b11
    return (
        version != _MPEG_VERSION_RESERVED
        and layer == _MPEG_LAYER_III
        and bitrate_index not in (0x0, 0xF)
        and sampling_index != 0b11
        and emphasis != 0b10
    )


def _is_adts_frame(data: bytes) -> bool:
    """An ADTS (raw AAC) frame header: 12-bit sync, layer 0, valid profile and sampling index."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        return False
    sampling_index = (data[2] >> 2) & 0xF
    channel_config = ((data[2] & 0x1) << 2) | (data[3] >> 6)
    frame_length = ((data[3] & 0x3) << 11) | (data[4] << 3) | (data[5] >> 5)
    header_length = 7 if data[1] & 0x1 else 9
    return (
        sampling_index <= _ADTS_MAX_SAMPLING_INDEX
        and channel_config != 0
        and frame_length > header_length
    )
