from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from libs.audio import SNIFF_BYTES, SUPPORTED, AudioFormat, sniff
from libs.audio.sniff import (
    AAC,
    AMR,
    AMR_WB,
    FLAC,
    M4A,
    MATROSKA,
    MP3,
    MP4,
    OGG,
    OGG_OPUS,
    OGG_VORBIS,
    THREE_G2,
    THREE_GP,
    WAV,
    WEBM,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _head(name: str) -> bytes:
    with (FIXTURES / name).open("rb") as f:
        return f.read(SNIFF_BYTES)


@pytest.mark.parametrize(
    ("name", "ext", "content_type"),
    [
        ("hello_campaign.wav", "wav", "audio/wav"),
        ("hello_campaign.mp3", "mp3", "audio/mpeg"),
        ("hello_campaign.m4a", "m4a", "audio/mp4"),
        ("hello_campaign.opus", "opus", "audio/ogg; codecs=opus"),
        ("hello_campaign.ogg", "ogg", "audio/ogg; codecs=vorbis"),
        ("hello_campaign.flac", "flac", "audio/flac"),
        ("hello_campaign.webm", "webm", "audio/webm"),
        ("hello_campaign.amr", "amr", "audio/amr"),
    ],
)
def test_real_encoded_files(name: str, ext: str, content_type: str) -> None:
    assert sniff(_head(name)) == AudioFormat(ext, content_type)


def test_mp3_without_id3_tag_is_recognised_by_frame_sync() -> None:
    data = (FIXTURES / "hello_campaign.mp3").read_bytes()
    assert data[:3] == b"ID3"
    # ID3v2 size: four 7-bit "syncsafe" bytes, excluding the 10-byte header.
    tag_size = 10 + sum((data[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
    frames = data[tag_size:]
    assert frames[0] == 0xFF
    assert sniff(frames[:SNIFF_BYTES]) == MP3


def _ogg_page(first_packet: bytes) -> bytes:
    # Capture pattern, version, "first page" flag, 20 bytes of granule/serial/sequence/CRC, one
    # segment in the lacing table, then the packet itself.
    return b"OggS\x00\x02" + bytes(20) + b"\x01" + bytes([len(first_packet)]) + first_packet


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", WAV),
        (b"RF64\xff\xff\xff\xffWAVEds64", WAV),
        (b"fLaC\x00\x00\x00\x22", FLAC),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00", MP3),
        (b"ID3\x04\x00\x00\x00\x00\x10\x00", MP3),
        # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz.
        (b"\xff\xfb\x90\x64" + bytes(60), MP3),
        # MPEG-2 Layer III, 32 kbit/s, 16 kHz (what the fixture's encoder writes).
        (b"\xff\xf3\x48\xc4" + bytes(60), MP3),
        # ADTS AAC-LC, 44.1 kHz, stereo, 371-byte frame.
        (b"\xff\xf1\x50\x80\x2e\x7f\xfc" + bytes(57), AAC),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isommp42\x00\x00\x00\x00", M4A),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41", MP4),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", MP4),
        (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00isom3gp4", THREE_GP),
        (b"\x00\x00\x00\x14ftyp3g2a\x00\x00\x00\x003g2a", THREE_G2),
        # An unknown major brand still counts when a compatible brand is an audio one.
        (b"\x00\x00\x00\x1cftypXYZ1\x00\x00\x00\x00XYZ1M4A isom", M4A),
        (_ogg_page(b"OpusHead\x01\x01\x38\x01\x80\x3e\x00\x00"), OGG_OPUS),
        (_ogg_page(b"\x01vorbis\x00\x00\x00\x00\x01\x80\x3e"), OGG_VORBIS),
        (_ogg_page(b"Speex   1.2"), OGG),
        (_ogg_page(b"\x7fFLAC\x01\x00"), OGG),
        (b"OggS\x00\x02", OGG),
        (
            b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm\x42\x87\x81\x04",
            WEBM,
        ),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska\x42\x87\x81\x04", MATROSKA),
        (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f", MATROSKA),
        (b"#!AMR\n\x3c\x91\x17", AMR),
        (b"#!AMR-WB\n\x24\x91", AMR_WB),
    ],
)
def test_magic_bytes(head: bytes, expected: AudioFormat) -> None:
    assert sniff(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x00",
        b"RIF",
        b"Hello, this is plain text and definitely not audio.\n",
        b"<!DOCTYPE html><html><head><title>nope</title></head></html>",
        b'{"text": "json is not audio"}',
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        b"GIF89a\x01\x00\x01\x00",
        b"RIFF\x24\x00\x00\x00AVI LIST",
        b"RIFF\x24\x00\x00\x00WEBPVP8 ",
        b"ID3 is the name of a tag format",
        # ftyp boxes that are images or QuickTime, not audio.
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
        b"\x00\x00\x00\x08ftyp",
        # MPEG sync with reserved fields: Layer II, free bitrate, bad bitrate, reserved rate.
        b"\xff\xfd\x90\x64" + bytes(60),
        b"\xff\xfb\x00\x64" + bytes(60),
        b"\xff\xfb\xf0\x64" + bytes(60),
        b"\xff\xfb\x9c\x64" + bytes(60),
        b"\xff\xeb\x90\x64" + bytes(60),
        bytes(SNIFF_BYTES),
        b"\xff" * SNIFF_BYTES,
    ],
)
def test_not_audio(head: bytes) -> None:
    assert sniff(head) is None


def test_random_junk_is_rejected() -> None:
    rng = random.Random(20240601)
    for _ in range(500):
        head = bytes(rng.randrange(256) for _ in range(SNIFF_BYTES))
        assert sniff(head) is None, head.hex()


def test_only_the_head_matters() -> None:
    data = (FIXTURES / "hello_campaign.wav").read_bytes()
    assert sniff(data) == sniff(data[:SNIFF_BYTES]) == WAV


def test_accepts_bytearray_and_memoryview() -> None:
    head = _head("hello_campaign.flac")
    assert sniff(bytearray(head)) == sniff(memoryview(head)) == FLAC


def test_audio_format_is_frozen_and_hashable() -> None:
    fmt = WAV
    with pytest.raises(AttributeError):
        fmt.ext = "mp3"  # type: ignore[misc]
    assert {fmt: 1}[AudioFormat("wav", "audio/wav")] == 1
    assert msgspec.json.encode(fmt) == b'{"ext":"wav","content_type":"audio/wav"}'


def test_supported_extensions_are_safe_in_object_keys() -> None:
    for fmt in SUPPORTED:
        assert fmt.ext.isascii()
        assert fmt.ext.isalnum()
        assert fmt.ext == fmt.ext.lower()
        assert fmt.content_type.startswith("audio/")
