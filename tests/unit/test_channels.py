"""Channel-aware decoding and the duplicated-mono check, on the committed call fixtures."""

from __future__ import annotations

import wave
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from libs.audio import SAMPLE_RATE, UndecodableAudio, iter_pcm
from libs.audio.channels import (
    analyze_channels,
    analyze_wavs,
    channel_count,
    write_channel_wavs,
)
from libs.audio.split import FRAME_SECONDS, frame_energies
from tests.fixtures.calls import CALL_DUP_MONO, CALL_STEREO, CALL_STEREO_8K, DURATION, TIMELINE

_LOUD = (32768 * 10 ** (-45 / 20)) ** 2


def _pcm(path: Path, **kw: object) -> np.ndarray:
    with closing(iter_pcm(path, **kw)) as pcm:  # type: ignore[arg-type]
        return np.frombuffer(b"".join(pcm), dtype="<i2").astype(np.float64)


def _first_loud(path: Path, channel: int) -> float:
    energies, _ = frame_energies(path, channel=channel)
    return float(np.flatnonzero(energies > _LOUD)[0] * FRAME_SECONDS)


@pytest.mark.parametrize("path", [CALL_STEREO, CALL_STEREO_8K])
def test_each_channel_decodes_alone_with_the_downmix_positions(path: Path) -> None:
    mix, left, right = _pcm(path), _pcm(path, channel=0), _pcm(path, channel=1)
    assert left.size == right.size == mix.size == pytest.approx(DURATION * SAMPLE_RATE, abs=400)
    # Each channel is its speaker's: the agent's clip starts at 0.5 s, the customer's at 4.3 s
    # (each clip opens with a little silence of its own).
    assert TIMELINE[0][1] <= _first_loud(path, 0) < TIMELINE[0][1] + 0.6
    assert TIMELINE[1][1] <= _first_loud(path, 1) < TIMELINE[1][1] + 0.6
    # A window of one channel is that window of the whole channel, to the sample.
    window = _pcm(path, channel=1, start=5.0, max_samples=SAMPLE_RATE)
    assert np.array_equal(window, right[5 * SAMPLE_RATE : 6 * SAMPLE_RATE])


def test_a_missing_channel_is_undecodable() -> None:
    with pytest.raises(UndecodableAudio, match="no channel 2"):
        _pcm(CALL_STEREO, channel=2)
    with pytest.raises(ValueError, match="channel must be"):
        _pcm(CALL_STEREO, channel=-1)


def test_two_voices_are_distinct_a_copied_mono_is_not() -> None:
    for path in (CALL_STEREO, CALL_STEREO_8K):
        report = analyze_channels(path)
        assert report.channels == 2 and report.distinct
        assert report.max_correlation is not None and report.max_correlation < 0.2
    dup = analyze_channels(CALL_DUP_MONO)
    assert dup.channels == 2 and not dup.distinct
    assert dup.max_correlation is not None and dup.max_correlation > 0.99
    assert channel_count(CALL_STEREO) == 2


def _stereo(tmp_path: Path, left: np.ndarray, right: np.ndarray) -> Path:
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.stack([left, right], 1).astype("<i2").tobytes())
    return path


def test_inverted_or_quieter_copies_are_duplicates_silence_is_not_a_voice(
    tmp_path: Path,
) -> None:
    voice = _pcm(CALL_STEREO, channel=0)
    assert not analyze_channels(_stereo(tmp_path, voice, -0.3 * voice)).distinct
    silent = analyze_channels(_stereo(tmp_path, voice, 0 * voice))
    assert silent.sounding == 1 and not silent.distinct
    mono = analyze_channels(CALL_STEREO.with_name("hello_campaign.wav"))
    assert mono.channels == 1 and not mono.distinct


def test_analysis_stops_at_its_window() -> None:
    assert analyze_channels(CALL_STEREO, max_seconds=2.0).seconds_analyzed == pytest.approx(2.0)


@pytest.mark.parametrize("path", [CALL_STEREO, CALL_STEREO_8K])
def test_channels_extracted_in_one_pass_equal_each_channel_decoded_alone(
    path: Path, tmp_path: Path
) -> None:
    dests = [tmp_path / "c0.wav", tmp_path / "c1.wav"]
    samples = write_channel_wavs(path, dests)
    for channel, dest in enumerate(dests):
        with wave.open(str(dest)) as out:
            assert (out.getnchannels(), out.getframerate(), out.getnframes()) == (
                1,
                SAMPLE_RATE,
                samples,
            )
        assert np.array_equal(_pcm(dest), _pcm(path, channel=channel))
    with pytest.raises(UndecodableAudio, match="3 channels asked"):
        write_channel_wavs(path, [*dests, tmp_path / "c2.wav"])


@pytest.mark.parametrize(
    ("path", "distinct"), [(CALL_STEREO, True), (CALL_STEREO_8K, True), (CALL_DUP_MONO, False)]
)
def test_the_extracted_channels_tell_the_same_as_the_recording(
    path: Path, distinct: bool, tmp_path: Path
) -> None:
    dests = [tmp_path / "c0.wav", tmp_path / "c1.wav"]
    write_channel_wavs(path, dests)
    from_wavs, from_file = analyze_wavs(dests), analyze_channels(path)
    assert from_wavs.distinct is from_file.distinct is distinct
    assert from_wavs.levels_dbfs == pytest.approx(from_file.levels_dbfs, abs=0.5)
    assert analyze_wavs(dests, max_seconds=2.0).seconds_analyzed == pytest.approx(2.0)


def test_a_16khz_pcm_wav_is_split_without_ffmpeg_to_the_same_samples(tmp_path: Path) -> None:
    left, right = _pcm(CALL_STEREO, channel=0), _pcm(CALL_STEREO, channel=1)
    source = _stereo(tmp_path, left, right)
    dests = [tmp_path / "c0.wav", tmp_path / "c1.wav"]
    assert write_channel_wavs(source, dests) == left.size
    assert np.array_equal(_pcm(dests[0]), left) and np.array_equal(_pcm(dests[1]), right)
