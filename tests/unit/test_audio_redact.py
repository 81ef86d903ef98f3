"""libs.audio.redact on real decoding: spans beeped or silenced to the sample, the rest intact."""

from __future__ import annotations

import wave
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from libs.audio.decode import SAMPLE_RATE, iter_pcm
from libs.audio.redact import BEEP_HZ, redact_to_wav, sample_windows

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _pcm(path: Path) -> np.ndarray:
    with closing(iter_pcm(path)) as chunks:
        return np.frombuffer(b"".join(chunks), dtype="<i2")


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_windows_are_padded_merged_and_clamped() -> None:
    assert sample_windows([(1.0, 1.5), (1.6, 2.0), (0.0, 0.05)], pad=0.1) == [
        (0, int(0.15 * SAMPLE_RATE)),
        (int(0.9 * SAMPLE_RATE), int(2.1 * SAMPLE_RATE)),
    ]
    assert sample_windows([(2.0, 1.0), (float("nan"), 1.0)]) == []


@pytest.mark.parametrize("source", ["hello_campaign.wav", "hello_campaign.opus"])
def test_silence_zeroes_exactly_the_padded_span(tmp_path: Path, source: str) -> None:
    original = _pcm(FIXTURES / source)
    dest = tmp_path / "out.wav"
    written = redact_to_wav(FIXTURES / source, dest, [(1.0, 1.5)], mode="silence", pad=0.1)
    redacted = _wav(dest)
    assert written == len(redacted) == len(original)
    lo, hi = int(0.9 * SAMPLE_RATE), int(1.6 * SAMPLE_RATE)
    assert not redacted[lo:hi].any()
    assert original[lo:hi].any()  # there was sound to remove
    assert np.array_equal(redacted[:lo], original[:lo])
    assert np.array_equal(redacted[hi:], original[hi:])


def test_beep_is_a_tone_across_chunk_boundaries(tmp_path: Path) -> None:
    source = FIXTURES / "hello_campaign.wav"
    original = _pcm(source)
    dest = tmp_path / "out.wav"
    # 0.8-1.3 s spans the decoder's one-second chunk boundary.
    redact_to_wav(source, dest, [(0.8, 1.3)], mode="beep", pad=0.0)
    redacted = _wav(dest)
    span = redacted[int(0.8 * SAMPLE_RATE) : int(1.3 * SAMPLE_RATE)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(span))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(span)
    assert abs(peak_hz - BEEP_HZ) < 5
    # Continuous phase: no jump at the chunk boundary bigger than one tone step.
    steps = np.abs(np.diff(span))
    assert steps.max() <= 0.25 * 32767 * 2 * np.pi * BEEP_HZ / SAMPLE_RATE + 2
    assert np.array_equal(redacted[: int(0.8 * SAMPLE_RATE)], original[: int(0.8 * SAMPLE_RATE)])


def test_no_spans_is_a_faithful_copy_and_spans_past_the_end_are_harmless(tmp_path: Path) -> None:
    source = FIXTURES / "hello_campaign.wav"
    dest = tmp_path / "out.wav"
    redact_to_wav(source, dest, [(999.0, 1000.0)])
    assert np.array_equal(_wav(dest), _pcm(source))
