"""Speech turns from frame loudness (libs.audio.turns): what a text-only engine is sent."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from libs.audio.decode import SAMPLE_RATE
from libs.audio.split import FRAME_SAMPLES
from libs.audio.turns import plan_turns

LOUD = (32768 * 10 ** (-20 / 20)) ** 2  # speech at -20 dBFS
HISS = (32768 * 10 ** (-70 / 20)) ** 2


def frames(*pieces: tuple[float, float]) -> npt.NDArray[np.float32]:
    """(seconds, level) pieces as 100 ms frame energies."""
    return np.concatenate(
        [np.full(round(seconds * 10), level, dtype=np.float32) for seconds, level in pieces]
    )


def seconds(plans: list) -> list[tuple[float, float]]:  # type: ignore[type-arg]
    return [(p.start / SAMPLE_RATE, p.end / SAMPLE_RATE) for p in plans]


def test_turns_are_the_stretches_of_speech_padded_without_overlap() -> None:
    energies = frames((1, HISS), (2, LOUD), (3, HISS), (1.5, LOUD), (2, HISS))
    plans = plan_turns(energies, energies.size * FRAME_SAMPLES)
    assert seconds(plans) == [(0.8, 3.2), (5.8, 7.7)]
    assert all(p.cut == p.end for p in plans)
    assert [p.index for p in plans] == [0, 1]


def test_a_short_pause_stays_inside_the_turn_and_a_blip_is_no_turn() -> None:
    energies = frames((1, HISS), (1, LOUD), (0.3, HISS), (1, LOUD), (2, HISS), (0.1, LOUD))
    energies = np.concatenate((energies, frames((2, HISS))))
    plans = plan_turns(energies, energies.size * FRAME_SAMPLES)
    assert seconds(plans) == [(0.8, 3.5)]


def test_silence_and_hiss_have_no_turns() -> None:
    assert plan_turns(frames((10, HISS)), 100 * FRAME_SAMPLES) == []
    assert plan_turns(np.zeros(0, dtype=np.float32), 0) == []


def test_a_long_turn_is_cut_and_every_piece_is_within_the_bound() -> None:
    energies = frames((0.5, HISS), (100, LOUD), (0.5, HISS))
    plans = plan_turns(energies, energies.size * FRAME_SAMPLES, max_turn_seconds=30)
    spans = seconds(plans)
    assert len(spans) == 4
    assert all(end - start <= 30 for start, end in spans)
    # Contiguous, covering the whole turn.
    assert spans[0][0] == 0.3 and abs(spans[-1][1] - 100.7) < 1e-9
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_a_quiet_speaker_on_a_quiet_line_still_has_turns() -> None:
    quiet = (32768 * 10 ** (-42 / 20)) ** 2
    energies = frames((1, 0.0), (2, quiet), (1, 0.0))
    assert seconds(plan_turns(energies, energies.size * FRAME_SAMPLES)) == [(0.8, 3.2)]
