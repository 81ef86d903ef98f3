"""Limits on one file's work (issue 24, item 5): the pure-Python header reader, the rule, the
decoder stopping at the limit, and downmixing any channel count."""

from __future__ import annotations

import struct
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from libs.audio.decode import decoded_duration, iter_pcm
from libs.audio.header import HEADER_BYTES, TAIL_BYTES, UNKNOWN, read_header
from libs.audio.limits import AudioLimits, AudioTooLong, UnsupportedSampleRate
from libs.audio.split import frame_energies
from services.transcriber import admission
from tests.fixtures.odd_audio import (
    adts_bytes,
    multichannel_wav,
    open_ended_wav,
    speech,
    tone,
    wav_bytes,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
SENTENCE = 102884 / 16_000


def _header_of(data: bytes, *, sized: bool = True) -> object:
    return read_header(
        data[:HEADER_BYTES], size=len(data) if sized else None, tail=data[-TAIL_BYTES:]
    )


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("hello_campaign.wav", 16_000, 1),
        ("hello_campaign.flac", 16_000, 1),
        ("hello_campaign.ogg", 16_000, 1),
        ("hello_campaign.opus", 48_000, 1),
        ("call_stereo_8k.wav", 8_000, 2),  # mu-law: duration from the block size
    ],
)
def test_headers_that_tell_are_read(name: str, rate: int, channels: int) -> None:
    header = _header_of((FIXTURES / name).read_bytes())
    assert header.sample_rate == rate  # type: ignore[attr-defined]
    assert header.channels == channels  # type: ignore[attr-defined]
    expected = 15.5 if name.startswith("call") else SENTENCE
    assert header.duration == pytest.approx(expected, abs=0.02)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["hello_campaign.mp3", "hello_campaign.m4a", "hello_campaign.amr"])
def test_headers_not_read_here_say_nothing(name: str) -> None:
    assert _header_of((FIXTURES / name).read_bytes()) == UNKNOWN


def test_the_one_hertz_wav_is_106_hours() -> None:
    # The attack file: 766 KB of samples labelled 1 Hz.
    data = wav_bytes(np.zeros(383_000, dtype="<i2"), rate=1)
    header = read_header(data[:HEADER_BYTES], size=len(data))
    assert header.sample_rate == 1
    assert header.duration == pytest.approx(383_000)


def test_an_open_ended_wav_is_timed_by_its_size_when_known() -> None:
    data = open_ended_wav(tone(3.0, 8_000), rate=8_000)
    assert read_header(data[:HEADER_BYTES]).duration is None
    assert read_header(data[:HEADER_BYTES]).bytes_per_second == 16_000
    assert read_header(data[:HEADER_BYTES], size=len(data)).duration == pytest.approx(3.0)


def test_a_pcm_wav_lying_about_its_byte_rate_is_timed_by_its_frames() -> None:
    data = bytearray(wav_bytes(tone(10.0, 8_000), rate=8_000))
    struct.pack_into("<I", data, 28, 1 << 30)  # nAvgBytesPerSec
    assert read_header(bytes(data[:HEADER_BYTES]), size=len(data)).duration == pytest.approx(10.0)


@pytest.mark.parametrize("cut", [4, 12, 20, 30, 40])
def test_truncated_or_garbled_headers_never_raise(cut: int) -> None:
    data = (FIXTURES / "hello_campaign.wav").read_bytes()[:cut]
    read_header(data, size=len(data))
    read_header(b"fLaC" + b"\x00" * (cut - 4))
    read_header(b"OggS" + b"\xff" * (cut - 4), tail=b"OggS\x00")


@pytest.mark.parametrize("rate", [1, 100, 1_999, 384_001, 1_000_000_000])
def test_rates_outside_telephony_and_music_are_refused(rate: int) -> None:
    data = wav_bytes(np.zeros(16, dtype="<i2"), rate=rate)
    with pytest.raises(UnsupportedSampleRate, match=f"{rate} Hz"):
        AudioLimits().check(read_header(data[:HEADER_BYTES], size=len(data)))


@pytest.mark.parametrize("rate", [2_000, 8_000, 44_100, 384_000])
def test_real_rates_pass(rate: int) -> None:
    data = wav_bytes(np.zeros(16, dtype="<i2"), rate=rate)
    AudioLimits().check(read_header(data[:HEADER_BYTES], size=len(data)))


def test_longer_than_the_limit_is_refused() -> None:
    data = wav_bytes(tone(6.0, 8_000), rate=8_000)
    header = read_header(data[:HEADER_BYTES], size=len(data))
    AudioLimits(max_seconds=6.0).check(header)
    with pytest.raises(AudioTooLong, match="MAX_AUDIO_SECONDS"):
        AudioLimits(max_seconds=5.0).check(header)
    assert AudioLimits().max_seconds == 8 * 3600


def test_decoding_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.aac"
    path.write_bytes(adts_bytes(10.0))
    assert decoded_duration(path, limit=60.0) == pytest.approx(10.0, abs=0.2)
    with pytest.raises(AudioTooLong, match="at least"):
        decoded_duration(path, limit=4.0)


def test_planning_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(wav_bytes(tone(30.0, 8_000), rate=8_000))
    _, total = frame_energies(path, max_seconds=31.0)
    assert total == 30 * 16_000
    with pytest.raises(AudioTooLong):
        frame_energies(path, max_seconds=5.0)


def test_the_transcriber_decodes_what_the_container_does_not_tell(tmp_path: Path) -> None:
    path = tmp_path / "raw.aac"
    path.write_bytes(adts_bytes(10.0))
    admission.check(path, AudioLimits(max_seconds=60.0))
    with pytest.raises(AudioTooLong):
        admission.check(path, AudioLimits(max_seconds=4.0))


def test_the_transcriber_refuses_a_one_hertz_wav(tmp_path: Path) -> None:
    path = tmp_path / "one.wav"
    path.write_bytes(wav_bytes(np.zeros(1_000, dtype="<i2"), rate=1))
    with pytest.raises(UnsupportedSampleRate):
        admission.check(path, AudioLimits())


@pytest.mark.parametrize("channels", [9, 16, 32, 64])
def test_any_channel_count_downmixes(tmp_path: Path, channels: int) -> None:
    """FFmpeg has no downmix for more than 8 unnamed channels (it failed with "Invalid
    argument", so the job failed invalid_media): they are averaged."""
    path = tmp_path / f"ch{channels}.wav"
    path.write_bytes(multichannel_wav(channels))
    with closing(iter_pcm(path)) as pcm:
        mixed = np.frombuffer(b"".join(pcm), dtype="<i2")
    voice = speech().astype(np.int32)
    assert mixed.size == voice.size
    # The speaking channel plus n-1 copies at 1/8, averaged.
    expected = (voice + (channels - 1) * (voice // 8)) // channels
    assert np.abs(mixed.astype(np.int32) - expected).max() <= 1
