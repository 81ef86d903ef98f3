"""Redacted copies of audio: each time span replaced by a beep or by silence.

The source is decoded with `iter_pcm` (any container the gateway accepts, streaming, constant
memory) and written as 16 kHz mono 16-bit WAV, the decoder's own format: one second of PCM at a
time is changed in place and written out, so an hour-long call costs no more memory than a
minute. Spans are widened by `pad` seconds on each side (word timestamps are approximate) and
merged when they overlap.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from libs.audio.decode import SAMPLE_RATE, SAMPLE_WIDTH, iter_pcm

AudioRedaction = Literal["beep", "silence"]
BEEP_HZ = 1000.0
# -12 dBFS: clearly a beep, never clipping, not painful in a headset.
BEEP_AMPLITUDE = 0.25 * 32767
PAD_SECONDS = 0.15


def sample_windows(
    spans: Sequence[tuple[float, float]], *, pad: float = PAD_SECONDS
) -> list[tuple[int, int]]:
    """Spans in seconds -> sorted, merged [start, end) sample windows, widened by `pad`."""
    windows = sorted(
        (max(0, round((s - pad) * SAMPLE_RATE)), round((e + pad) * SAMPLE_RATE))
        for s, e in spans
        if math.isfinite(s) and math.isfinite(e) and e >= s
    )
    merged: list[tuple[int, int]] = []
    for start, end in windows:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _tone(first: int, count: int) -> npt.NDArray[np.int16]:
    # Phase from the absolute sample index, so a beep cut across chunks stays continuous.
    t = (np.arange(first, first + count, dtype=np.float64)) / SAMPLE_RATE
    return (BEEP_AMPLITUDE * np.sin(2 * np.pi * BEEP_HZ * t)).astype(np.int16)


def redact_to_wav(
    source: Path,
    dest: Path,
    spans: Sequence[tuple[float, float]],
    *,
    mode: AudioRedaction = "beep",
    pad: float = PAD_SECONDS,
) -> int:
    """Write `source` to `dest` (WAV, 16 kHz mono s16le) with every span beeped or silenced;
    returns the number of samples written. Raises UndecodableAudio like `iter_pcm`."""
    windows = sample_windows(spans, pad=pad)
    position = 0
    next_window = 0
    with wave.open(str(dest), "wb") as out, closing(iter_pcm(source)) as pcm:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        for chunk in pcm:
            samples = np.frombuffer(chunk, dtype="<i2").copy()
            end = position + len(samples)
            # Windows that ended before this chunk are done for good.
            while next_window < len(windows) and windows[next_window][1] <= position:
                next_window += 1
            k = next_window
            while k < len(windows) and windows[k][0] < end:
                lo = max(windows[k][0], position) - position
                hi = min(windows[k][1], end) - position
                if mode == "beep":
                    samples[lo:hi] = _tone(position + lo, hi - lo)
                else:
                    samples[lo:hi] = 0
                k += 1
            out.writeframes(samples.astype("<i2").tobytes())
            position = end
    return position
