"""Does a recording hold separate voices on its channels, or one mono signal copied to each?

Contact centres record agent and customer on the two channels of a stereo file; many other
"stereo" files are mono duplicated (or panned) onto both. One streaming pass over the first
minutes answers which, in constant memory: the level of every channel and the correlation of
every pair. Copies of one signal correlate near 1 whatever their gains; two people on two lines
correlate near 0 (echo and crosstalk bleed keep it well under the threshold).
"""

from __future__ import annotations

import math
import wave
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from libs.audio.decode import (
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    UndecodableAudio,
    _audio_stream,
    _frames,
    _open,
    _translated_errors,
)

# Pairs correlating at least this much carry the same signal.
DUPLICATE_CORRELATION = 0.9
# A channel quieter than this (RMS, dBFS) carries nothing worth a transcription of its own.
SILENT_DBFS = -50.0
# Enough of any real call to tell (a copied mono is copied throughout); the rest of a two-hour
# file is not decoded for this.
ANALYSIS_SECONDS = 120.0
_RATE = 8_000  # correlation needs no more than telephone bandwidth


@dataclass(frozen=True, slots=True)
class ChannelReport:
    channels: int
    # RMS level of each channel in dBFS (-inf for digital silence).
    levels_dbfs: tuple[float, ...]
    # The highest correlation between two sounding channels (None with fewer than two).
    max_correlation: float | None
    seconds_analyzed: float

    @property
    def sounding(self) -> int:
        return sum(1 for level in self.levels_dbfs if level > SILENT_DBFS)

    @property
    def distinct(self) -> bool:
        """Two or more channels carry sound, and no two of those carry the same signal."""
        return (
            self.sounding >= 2
            and self.max_correlation is not None
            and self.max_correlation < DUPLICATE_CORRELATION
        )


def channel_count(path: Path) -> int:
    """Channels of the first audio stream, from the header (no decoding)."""
    with _open(path) as container:
        return int(_audio_stream(container, path).codec_context.channels or 0)


def analyze_channels(path: Path, *, max_seconds: float = ANALYSIS_SECONDS) -> ChannelReport:
    """Levels and pairwise correlations of the first `max_seconds`; raises `UndecodableAudio`."""
    gram: npt.NDArray[np.float64] | None = None
    channels = 0
    limit = round(max_seconds * _RATE)
    seen = 0
    with _open(path) as container:
        stream = _audio_stream(container, path)
        channels = int(stream.codec_context.channels or 0)
        resampler = av.AudioResampler(format="s16", rate=_RATE)  # packed, input layout kept
        with _translated_errors(path):
            for frame in _frames(container, stream, path):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1, out.layout.nb_channels)
                    samples = samples[: limit - seen].astype(np.float64)
                    seen += samples.shape[0]
                    product = samples.T @ samples
                    gram = product if gram is None else gram + product
                if seen >= limit:
                    break
    if gram is None or seen == 0:
        return ChannelReport(channels, (), None, 0.0)
    return _report(gram, seen, _RATE)


def analyze_wavs(paths: list[Path], *, max_seconds: float = ANALYSIS_SECONDS) -> ChannelReport:
    """The same report from channels already extracted as mono 16-bit WAVs (write_channel_wavs),
    read with numpy: no second decoding of the recording."""
    columns = []
    for path in paths:
        with wave.open(str(path), "rb") as wav:
            frames = min(wav.getnframes(), round(max_seconds * wav.getframerate()))
            rate = wav.getframerate()
            columns.append(np.frombuffer(wav.readframes(frames), dtype="<i2"))
    seen = min((c.size for c in columns), default=0)
    if seen == 0:
        return ChannelReport(len(paths), (), None, 0.0)
    # Every other sample: correlation needs no more than telephone bandwidth (as _RATE).
    step = max(1, rate // _RATE)
    samples = np.stack([c[:seen:step] for c in columns], axis=1).astype(np.float64)
    return _report(samples.T @ samples, samples.shape[0], rate // step)


def _report(gram: npt.NDArray[np.float64], seen: int, rate: int) -> ChannelReport:
    power = np.diag(gram) / seen
    levels = tuple(20 * math.log10(math.sqrt(p) / 32768) if p > 0 else float("-inf") for p in power)
    sounding = [i for i, level in enumerate(levels) if level > SILENT_DBFS]
    correlations = [
        abs(float(gram[i, j] / math.sqrt(gram[i, i] * gram[j, j])))
        for n, i in enumerate(sounding)
        for j in sounding[n + 1 :]
    ]
    return ChannelReport(
        channels=gram.shape[0],
        levels_dbfs=tuple(round(level, 1) for level in levels),
        max_correlation=round(max(correlations), 4) if correlations else None,
        seconds_analyzed=round(seen / rate, 3),
    )


def write_channel_wavs(path: Path, dests: list[Path]) -> int:
    """Channel k of `path` as 16 kHz mono PCM WAV at `dests[k]`, all in ONE decoding pass (the
    same samples as `iter_pcm(path, channel=k)`); returns the samples written per channel."""
    written = 0
    with _open(path) as container, ExitStack() as stack:
        stream = _audio_stream(container, path)
        channels = int(stream.codec_context.channels or 0)
        if len(dests) > channels:
            raise UndecodableAudio(f"{path.name}: {len(dests)} channels asked, it has {channels}")
        native = (
            container.format.name == "wav"
            and stream.codec_context.name == "pcm_s16le"
            and stream.codec_context.sample_rate == SAMPLE_RATE
        )
        outs = []
        for dest in dests:
            out = stack.enter_context(wave.open(str(dest), "wb"))
            out.setnchannels(1)
            out.setsampwidth(SAMPLE_WIDTH)
            out.setframerate(SAMPLE_RATE)
            outs.append(out)
        if native:
            # Already 16 kHz s16: de-interleaving is all there is to do (~10x faster than
            # FFmpeg's resampler doing the same through per-frame Python calls).
            written = _split_pcm_wav(path, channels, outs)
            if written:
                return written
        resampler = av.AudioResampler(format="s16p", rate=SAMPLE_RATE)
        with _translated_errors(path):
            for frame in _frames(container, stream, path):
                for resampled in resampler.resample(frame):
                    written += _write_planes(resampled, outs)
            for resampled in resampler.resample(None):
                written += _write_planes(resampled, outs)
    if written == 0:
        raise UndecodableAudio(f"{path.name}: no audio samples could be decoded")
    return written


def _split_pcm_wav(path: Path, channels: int, outs: list[wave.Wave_write]) -> int:
    """0 when Python's wave module cannot read the file (FFmpeg then does the work)."""
    written = 0
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != channels or wav.getsampwidth() != SAMPLE_WIDTH:
                return 0
            while block := wav.readframes(10 * SAMPLE_RATE):
                samples = np.frombuffer(block, dtype="<i2").reshape(-1, channels)
                for channel, out in enumerate(outs):
                    out.writeframesraw(np.ascontiguousarray(samples[:, channel]).tobytes())
                written += samples.shape[0]
    except (wave.Error, EOFError, ValueError):
        return 0
    return written


def _write_planes(frame: av.AudioFrame, outs: list[wave.Wave_write]) -> int:
    size = frame.samples * SAMPLE_WIDTH
    for plane, out in zip(frame.planes, outs, strict=False):
        out.writeframesraw(memoryview(plane)[:size])
    return int(frame.samples)
