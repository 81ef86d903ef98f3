"""Chunk reassembly, split planning and delay clamping, without servers."""

from __future__ import annotations

import numpy as np

from libs.audio.split import FRAME_SAMPLES, SAMPLE_RATE, plan_chunks
from libs.bus.consumer import clamp_delay
from libs.transcript import Segment, Transcript
from libs.transcript.merge import ChunkTranscript, merge, overlap_length


def _t(text: str, segments: tuple[Segment, ...] = ()) -> Transcript:
    return Transcript(
        text=text, language="en", duration=0, segments=segments, model="m", engine="e"
    )


def test_text_only_chunks_drop_the_words_heard_twice() -> None:
    merged = merge(
        [
            ChunkTranscript(0, 600, _t("we will call you back tomorrow morning")),
            ChunkTranscript(600, 900, _t("tomorrow morning at nine then")),
        ],
        duration=900,
        timed=False,
    )
    assert merged.text == "we will call you back tomorrow morning at nine then"


def test_a_short_single_repeat_is_kept() -> None:
    assert overlap_length(["to", "the"], ["the", "end"]) == 0
    assert overlap_length(["call", "tomorrow"], ["tomorrow", "then"]) == 1


def test_timed_chunks_are_offset_and_deduplicated_at_the_cut() -> None:
    first = _t(
        "a b",
        (Segment(0, 1.0, 2.0, "a"), Segment(1, 599.5, 600.4, "b"), Segment(2, 600.6, 601, "c")),
    )
    second = _t(
        "b c", (Segment(0, 0.0, 0.4, "b-tail"), Segment(1, 0.6, 1.0, "c"), Segment(2, 5, 6, "d"))
    )
    merged = merge(
        [ChunkTranscript(0, 600, first), ChunkTranscript(600, 700, second)],
        duration=700,
        timed=True,
    )
    assert [(s.text, s.start) for s in merged.segments] == [
        ("a", 1.0),
        ("b", 599.5),
        ("c", 600.6),
        ("d", 605.0),
    ]


def test_cuts_land_in_the_middle_of_the_pause() -> None:
    frames = 1500 * 10  # 25 minutes of 100 ms frames, loud except a pause at 560-563 s
    energies = np.full(frames, 1e6, dtype=np.float32)
    energies[5600:5630] = 0
    plans = plan_chunks(energies, frames * FRAME_SAMPLES, target_seconds=600, search_seconds=60)
    assert abs(plans[0].cut / SAMPLE_RATE - 561.5) < 0.3
    assert plans[1].start == plans[0].cut and plans[0].end == plans[0].cut + SAMPLE_RATE
    assert plans[-1].cut == frames * FRAME_SAMPLES


def test_delays_are_clamped() -> None:
    assert clamp_delay(86400, 900) == 900
    assert clamp_delay(float("nan"), 900) == 0
    assert clamp_delay(-5, 900) == 0
