"""Speech turns of one speaker's channel, for engines that answer text without timings.

The gpt-4o transcription models answer text only: one request per channel would come back as
one utterance per channel, so a call's talk time, overlap and interruptions would be wrong.
Cut each channel into its turns instead (stretches of speech separated by pauses), send each
turn as its own request, and every engine yields true turns: a turn's text is timed by the
turn's own bounds.

Speech is told from silence by loudness over the same 100 ms frames `libs.audio.split` measures
(`frame_energies`): a frame is speech when it is well above the channel's own noise floor (its
quiet percentile) and above an absolute floor, so a channel of hiss has no turns and a quiet
speaker on a quiet line still has them (within bounds: see `_CEILING`). Pauses shorter than `min_gap_seconds` stay inside a
turn (a breath between words is not a turn), very short blips are dropped, and a turn longer
than `max_turn_seconds` is cut in its quietest stretch, as long audio is. Every plan is a
`ChunkPlan` without overlap (`cut == end`): the long-audio path encodes, sends, saves and
resumes them like any chunk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from libs.audio.decode import SAMPLE_RATE
from libs.audio.split import FRAME_SAMPLES, FRAME_SECONDS, ChunkPlan, plan_chunks

# Loudness floor of "speech" in mean-square units (about -50 dBFS), and how far above the
# channel's noise floor (its 10th percentile frame) a frame must be: 12 dB, but never more
# than -38 dBFS (a channel that is nearly all speech has a "noise floor" of speech).
_ABSOLUTE_FLOOR = (32768 * 10 ** (-50 / 20)) ** 2
_CEILING = (32768 * 10 ** (-38 / 20)) ** 2
_ABOVE_NOISE = 10 ** (12 / 10)
_NOISE_PERCENTILE = 10


def speech_frames(energies: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Which 100 ms frames hold speech."""
    if energies.size == 0:
        return np.zeros(0, dtype=bool)
    noise = float(np.percentile(energies, _NOISE_PERCENTILE))
    threshold = min(_CEILING, max(_ABSOLUTE_FLOOR, noise * _ABOVE_NOISE))
    return np.asarray(energies > threshold)


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[first, last) frame index of every run of True."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def plan_turns(
    energies: npt.NDArray[np.float32],
    total_samples: int,
    *,
    max_turn_seconds: float = 60.0,
    min_gap_seconds: float = 0.6,
    min_turn_seconds: float = 0.3,
    pad_seconds: float = 0.2,
) -> list[ChunkPlan]:
    """The turns of one channel as chunk plans (samples, no overlap), in order."""
    gap = max(1, round(min_gap_seconds / FRAME_SECONDS))
    shortest = max(1, round(min_turn_seconds / FRAME_SECONDS))
    pad = round(pad_seconds * SAMPLE_RATE)
    merged: list[tuple[int, int]] = []
    for first, last in _runs(speech_frames(energies)):
        if merged and first - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    plans: list[ChunkPlan] = []
    previous_end = 0
    for first, last in merged:
        if last - first < shortest:
            continue
        start = max(previous_end, first * FRAME_SAMPLES - pad)
        end = min(total_samples, last * FRAME_SAMPLES + pad)
        if end <= start:
            continue
        for piece in _split_long(energies, start, end, max_turn_seconds):
            plans.append(ChunkPlan(index=len(plans), start=piece[0], cut=piece[1], end=piece[1]))
        previous_end = end
    return plans


def _split_long(
    energies: npt.NDArray[np.float32], start: int, end: int, max_seconds: float
) -> list[tuple[int, int]]:
    """[start, end) cut in its quietest stretches into pieces of at most `max_seconds`."""
    if (end - start) / SAMPLE_RATE <= max_seconds:
        return [(start, end)]
    first_frame = start // FRAME_SAMPLES
    window = energies[first_frame : -(-end // FRAME_SAMPLES)]
    offset = first_frame * FRAME_SAMPLES
    pieces = plan_chunks(
        window,
        end - offset,
        target_seconds=max_seconds,
        search_seconds=max_seconds / 4,
        overlap_seconds=0.0,
    )
    bounds = [(max(start, offset + p.start), offset + p.cut) for p in pieces]
    return [(s, e) for s, e in bounds if e > s]
