"""Cut long recordings into chunks an API accepts: cuts at silence, a small overlap, compact files.

Two passes over the source, both streaming in constant memory: `frame_energies` measures the
loudness of every 100 ms frame (an array of 72,000 floats for two hours), `plan_chunks` picks
cut points in the quietest stretch near each target length, and `encode_window` transcodes one
window of samples to a small Ogg/Opus file. Positions are kept in samples at 16 kHz, so a
chunk's offset in the recording is exact, whatever the codec does inside the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from libs.audio.decode import SAMPLE_RATE, iter_pcm
from libs.audio.limits import AudioTooLong, too_long_detail

FRAME_SAMPLES = SAMPLE_RATE // 10
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
# The quietest stretch is judged over this much audio, so a cut lands inside a pause rather
# than in the gap between two syllables.
_SMOOTH_FRAMES = 5
# Frames within this factor of the quietest one count as equally quiet; the cut goes in the
# middle of the longest such run (the middle of the pause, not its edge).
_QUIET_FACTOR = 2.0
# A floor for "silence" in mean-square units (about -60 dBFS), so digital silence and faint
# hiss compare as equal instead of the argmin chasing noise.
_SILENCE_FLOOR = (32768 * 10 ** (-60 / 20)) ** 2

# Speech at 16 kHz mono: Opus at 24 kbit/s is transparent for recognition and ~1/20 of PCM,
# so a 10-minute chunk is under 2 MB (OpenAI's limit is 25 MiB).
CHUNK_CODEC = "libopus"
CHUNK_BITRATE = 24_000
CHUNK_EXTENSION = "ogg"
CHUNK_CONTENT_TYPE = "audio/ogg"
# libopus's default effort (10) encodes at ~90x real time here; 3 runs at ~400x for a 30% larger
# file, which matters more when a two-hour call is split on a busy worker.
_ENCODER_OPTIONS = {"compression_level": "3"}


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Samples [start, end) of the recording; `cut` is where the next chunk starts.

    [cut, end) is the overlap: the chunk hears a little past its cut, so a word spoken across
    the cut is whole in this chunk; what it says after `cut` is the next chunk's to report.
    """

    index: int
    start: int
    cut: int
    end: int

    @property
    def start_seconds(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def cut_seconds(self) -> float:
        return self.cut / SAMPLE_RATE

    @property
    def samples(self) -> int:
        return self.end - self.start


def frame_energies(
    path: Path, *, channel: int | None = None, max_seconds: float | None = None
) -> tuple[npt.NDArray[np.float32], int]:
    """Mean square amplitude of every 100 ms frame (the last may be partial), and the total
    number of samples, of the downmix or of one `channel`; raises `UndecodableAudio` like
    `iter_pcm`, and `AudioTooLong` as soon as more than `max_seconds` have decoded (the
    container's duration, if it gave one, was wrong)."""
    energies: list[npt.NDArray[np.float32]] = []
    total = 0
    limit = None if max_seconds is None else max_seconds * SAMPLE_RATE
    tail = np.zeros(0, dtype=np.float32)
    # 10 s per decoded chunk keeps numpy's per-call overhead negligible.
    with closing(iter_pcm(path, chunk_samples=FRAME_SAMPLES * 100, channel=channel)) as pcm:
        for chunk in pcm:
            samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
            total += samples.size
            if limit is not None and total > limit:
                assert max_seconds is not None
                raise AudioTooLong(too_long_detail(total / SAMPLE_RATE, max_seconds, at_least=True))
            if tail.size:
                samples = np.concatenate((tail, samples))
            whole = samples.size // FRAME_SAMPLES * FRAME_SAMPLES
            if whole:
                frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
                energies.append(np.mean(frames * frames, axis=1, dtype=np.float32))
            tail = samples[whole:]
    if tail.size:
        energies.append(np.array([np.mean(tail * tail)], dtype=np.float32))
    if not energies:
        return np.zeros(0, dtype=np.float32), total
    return np.concatenate(energies), total


def plan_chunks(
    energies: npt.NDArray[np.float32],
    total_samples: int,
    *,
    target_seconds: float = 600.0,
    search_seconds: float = 60.0,
    overlap_seconds: float = 1.0,
) -> list[ChunkPlan]:
    """Chunks of at most `target_seconds + overlap_seconds`, each cut in the quietest stretch
    of the last `search_seconds` before its target length."""
    if target_seconds <= search_seconds or search_seconds <= 0:
        raise ValueError("need target_seconds > search_seconds > 0")
    target = round(target_seconds * SAMPLE_RATE)
    overlap = round(overlap_seconds * SAMPLE_RATE)
    plans: list[ChunkPlan] = []
    start = 0
    while total_samples - start > target:
        low = start + target - round(search_seconds * SAMPLE_RATE)
        cut = _quietest_point(energies, low, start + target)
        plans.append(
            ChunkPlan(index=len(plans), start=start, cut=cut, end=min(total_samples, cut + overlap))
        )
        start = cut
    plans.append(ChunkPlan(index=len(plans), start=start, cut=total_samples, end=total_samples))
    return plans


def _quietest_point(energies: npt.NDArray[np.float32], low: int, high: int) -> int:
    """A sample in [low, high) in the middle of the longest run of the quietest frames."""
    first = -(-low // FRAME_SAMPLES)  # frames fully inside the window
    last = high // FRAME_SAMPLES
    window = energies[first:last]
    if window.size < _SMOOTH_FRAMES:
        return high
    kernel = np.ones(_SMOOTH_FRAMES, dtype=np.float32) / _SMOOTH_FRAMES
    smooth = np.maximum(np.convolve(window, kernel, mode="valid"), _SILENCE_FLOOR)
    quiet = smooth <= smooth.min() * _QUIET_FACTOR
    best_start, best_len, run_start = 0, 0, -1
    for i, flag in enumerate(np.append(quiet, False)):
        if flag and run_start < 0:
            run_start = i
        elif not flag and run_start >= 0:
            if i - run_start > best_len:
                best_start, best_len = run_start, i - run_start
            run_start = -1
    # smooth[i] averages frames i .. i+_SMOOTH_FRAMES-1 of the window: its centre is half a
    # smoothing width in; the run's centre is the middle of the pause.
    centre = best_start + (best_len - 1) / 2 + _SMOOTH_FRAMES / 2
    cut = round((first + centre) * FRAME_SAMPLES)
    return min(max(cut, low), high)


# Lossless chunks for a local engine: 16-bit PCM in WAV, nothing to decode but the header.
PCM_CODEC = "pcm_s16le"
PCM_EXTENSION = "wav"


def chunk_extension(encoding: str) -> str:
    """The file extension of a chunk written with `encode_window(..., encoding=...)`."""
    return PCM_EXTENSION if encoding == "pcm" else CHUNK_EXTENSION


def encode_window(
    source: Path,
    dest: Path,
    *,
    start: int,
    samples: int,
    encoding: str = "opus",
    channel: int | None = None,
) -> int:
    """Transcode samples [start, start + samples) of `source` (its downmix, or one `channel`) to
    mono Ogg/Opus at `dest`, or (with `encoding="pcm"`) 16-bit WAV; returns the number of
    samples written (fewer if the source ends early)."""
    written = 0
    pcm = encoding == "pcm"
    with av.open(str(dest), mode="w", format="wav" if pcm else "ogg") as out:
        if pcm:
            stream = out.add_stream(PCM_CODEC, rate=SAMPLE_RATE, layout="mono")
        else:
            stream = out.add_stream(
                CHUNK_CODEC, rate=SAMPLE_RATE, layout="mono", options=_ENCODER_OPTIONS
            )
        assert isinstance(stream, av.AudioStream)
        if not pcm:
            stream.bit_rate = CHUNK_BITRATE
        for frame in _frames(source, start, samples, channel):
            written += frame.samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return written


def _frames(source: Path, start: int, samples: int, channel: int | None) -> Iterator[av.AudioFrame]:
    pts = 0
    with closing(
        iter_pcm(
            source,
            start=start / SAMPLE_RATE,
            max_samples=samples,
            chunk_samples=SAMPLE_RATE,
            channel=channel,
        )
    ) as pcm:
        for chunk in pcm:
            array = np.frombuffer(chunk, dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(array, format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            pts += frame.samples
            yield frame
