"""Decode any supported container to 16 kHz mono s16le PCM, streaming, in constant memory.

PyAV (FFmpeg) does the demuxing, decoding and resampling; this module adds a bounded chunking
layer, sample-accurate start/length windows (for splitting long audio) and one exception type
for "this is not audio we can decode".
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.error
import msgspec
import numpy as np
import structlog

from libs.audio.header import Header
from libs.audio.limits import AudioTooLong, too_long_detail

SAMPLE_RATE = 16_000
SAMPLE_WIDTH = 2  # bytes per sample: signed 16-bit little-endian, mono
# One second per chunk: big enough that per-chunk overhead is noise, small enough (32 KiB) that
# a consumer holding a few chunks never notices.
DEFAULT_CHUNK_SAMPLES = SAMPLE_RATE

# How far before the requested start a seek aims, and how late its landing may be before the
# seek is judged to have missed (some demuxers land on the next packet instead of the previous).
_SEEK_PREROLL = 0.5
_SEEK_TOLERANCE = 0.005
# Raw codec streams with no container-level duration: FFmpeg fills one in from file size and the
# first packets' bit rate, which was 3% off on a plain AMR-NB recording. Decoding them is cheap.
_GUESSED_DURATION_FORMATS = frozenset({"amr", "amrnb", "amrwb", "aac"})
# FFmpeg's own tools skip a packet that fails to decode and carry on, and so do we: one damaged
# packet should not cost the whole recording. A long run of them means the rest is noise.
MAX_CONSECUTIVE_BAD_PACKETS = 50

_log = structlog.get_logger()


class UndecodableAudio(ValueError):
    """The file is not audio FFmpeg can decode: corrupt, truncated, unknown or audio-less."""


class AudioInfo(msgspec.Struct, frozen=True, kw_only=True):
    duration: float
    container: str
    codec: str
    sample_rate: int
    channels: int


def probe(path: Path) -> AudioInfo:
    """Describe the first audio stream; the duration is decoded for when the container omits it."""
    with _open(path) as container:
        stream = _audio_stream(container, path)
        duration = _declared_duration(container, stream)
        info = AudioInfo(
            duration=0.0,
            container=str(container.format.name),
            codec=str(stream.codec_context.name),
            sample_rate=int(stream.codec_context.sample_rate or 0),
            channels=int(stream.codec_context.channels or 0),
        )
    if duration is None:
        duration = _decoded_duration(path)
    return msgspec.structs.replace(info, duration=duration)


def probe_duration(path: Path) -> float:
    """Duration in seconds: the container's own figure, else measured by decoding the file.

    Browser recordings (MediaRecorder webm) and some streamed Ogg files carry no duration; the
    fallback decodes without resampling, so it costs one pass of the codec and constant memory.
    """
    with _open(path) as container:
        duration = _declared_duration(container, _audio_stream(container, path))
    return duration if duration is not None else _decoded_duration(path)


def iter_pcm(
    path: Path,
    *,
    start: float = 0.0,
    max_samples: int | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    channel: int | None = None,
) -> Generator[bytes, None, None]:
    """Yield 16 kHz mono s16le PCM in chunks of exactly `chunk_samples` (the last may be shorter).

    `channel=None` downmixes every channel; `channel=k` yields channel k (0-based) alone, with
    the same sample positions, so channel k's sample n is the downmix's sample n. Asking for a
    channel the file does not have raises `UndecodableAudio`.

    `start` (seconds) seeks before decoding and then trims to the sample, so consecutive windows
    `(start=k * w, max_samples=w * SAMPLE_RATE)` tile the file. Memory is bounded by one chunk
    plus FFmpeg's own per-packet buffers, whatever the file's length. Close the generator (or
    exhaust it) to release the file; a `with contextlib.closing(...)` does both.

    Raises `UndecodableAudio` (possibly after yielding some chunks, if the damage is mid-file).
    """
    if chunk_samples <= 0:
        raise ValueError(f"chunk_samples must be positive, got {chunk_samples}")
    if start < 0 or not math.isfinite(start):
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    if channel is not None and channel < 0:
        raise ValueError(f"channel must be >= 0, got {channel}")
    if max_samples == 0:
        return
    chunk_bytes = chunk_samples * SAMPLE_WIDTH
    remaining = None if max_samples is None else max_samples * SAMPLE_WIDTH
    pending = bytearray()
    emitted = False
    for piece in _resampled(path, start, channel):
        if remaining is not None:
            piece = piece[:remaining]
            remaining -= len(piece)
        pending += piece
        while len(pending) >= chunk_bytes:
            yield bytes(pending[:chunk_bytes])
            del pending[:chunk_bytes]
            emitted = True
        if remaining == 0:
            break
    if pending:
        yield bytes(pending)
        emitted = True
    # Seeking past the end legitimately yields nothing; a file that decodes to nothing from the
    # start is a header without audio, which nobody can transcribe.
    if not emitted and start == 0:
        raise UndecodableAudio(f"{path.name}: no audio samples could be decoded")


def _resampled(path: Path, start: float, channel: int | None) -> Iterator[memoryview]:
    if start > 0:
        try:
            yield from _decode(path, start, seek=True, channel=channel)
        except _SeekMissed:
            pass
        else:
            return
    yield from _decode(path, start, seek=False, channel=channel)


class _SeekMissed(Exception):
    """Raised before anything is yielded, so the caller can start over without seeking."""


def _decode(
    path: Path, start: float, *, seek: bool, channel: int | None = None
) -> Iterator[memoryview]:
    """Resampler output from `start` on, as views on the frames (no copy until the caller's).

    Sample 0 of the output is the stream's first decodable sample, whatever its timestamp
    (MP3 encoder delay and AAC priming make that non-zero), so `start` is relative to it.
    """
    with _open(path) as container:
        stream = _audio_stream(container, path)
        mix = channel is None and _unnamed_many(stream)
        if mix:
            # FFmpeg's resampler has no downmix for these layouts (see _unnamed_many): the
            # channels are resampled interleaved, as they are, and averaged here.
            resampler = av.AudioResampler(format="s16", rate=SAMPLE_RATE)
        elif channel is None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        else:
            channels = int(stream.codec_context.channels or 0)
            if channel >= channels:
                raise UndecodableAudio(f"{path.name}: no channel {channel} (it has {channels})")
            # Planar output in the input's own layout: plane k is channel k, resampled alone.
            resampler = av.AudioResampler(format="s16p", rate=SAMPLE_RATE)
        # Without a seek the file is decoded from the top and everything before `start` dropped.
        skip = round(start * SAMPLE_RATE) * SAMPLE_WIDTH
        first = True
        with _translated_errors(path):
            if seek:
                target = _origin(container, stream, path) + start
                # Land early on purpose: MP3's bit reservoir and Opus's pre-skip need a few
                # packets before the decoder's output is right; the lead-in is trimmed below.
                _seek(container, stream, target - _SEEK_PREROLL)
            for frame in _frames(container, stream, path):
                if first and seek:
                    if frame.time is None or frame.time > target + _SEEK_TOLERANCE:
                        raise _SeekMissed
                    lead = max(0.0, target - float(frame.time))
                    skip = round(lead * SAMPLE_RATE) * SAMPLE_WIDTH
                first = False
                for out in resampler.resample(frame):
                    view, skip = _skip(_pcm_view(out, channel, mix=mix), skip)
                    if view:
                        yield view
            if first and seek:
                # Nothing after the seek point: either `start` is past the end or the seek went
                # astray; only a linear decode can tell which.
                raise _SeekMissed
            for out in resampler.resample(None):
                view, skip = _skip(_pcm_view(out, channel, mix=mix), skip)
                if view:
                    yield view


def _origin(container: Any, stream: Any, path: Path) -> float:
    """Timestamp of the first decoded sample, the zero that `start` counts from.

    Not `stream.start_time`: that is the first packet's, and decoders that trim priming samples
    (Opus pre-skip in WebM, for one) move the first sample away from it.
    """
    for frame in _frames(container, stream, path):
        if frame.time is not None:
            return float(frame.time)
        break
    raise _SeekMissed


def _skip(view: memoryview, skip: int) -> tuple[memoryview, int]:
    dropped = min(skip, len(view))
    return view[dropped:], skip - dropped


def _seek(container: Any, stream: Any, seconds: float) -> None:
    try:
        container.seek(round(max(0.0, seconds) / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError as exc:
        # Formats without an index (raw AMR, ADTS) cannot seek; FFmpeg says so with assorted
        # errors (even EPERM). Decoding from the top is always possible.
        raise _SeekMissed from exc


def _frames(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    """Decoded frames, skipping packets the codec rejects and stopping at a truncated tail."""
    packets = container.demux(stream)
    decoded = bad = consecutive_bad = 0
    truncated = False
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError:
            if decoded == 0:
                raise
            # The container broke after real audio: an upload cut short. What came before is
            # still the caller's audio, so end the stream there rather than discard it all.
            truncated = True
            break
        try:
            frames = packet.decode()
        # Corrupt AMR frames come back as "not implemented" (their mode bits look like an
        # unsupported mode), hence PatchWelcomeError alongside the usual invalid-data errors.
        except (av.error.InvalidDataError, av.error.ArgumentError, av.error.PatchWelcomeError):
            bad += 1
            consecutive_bad += 1
            if consecutive_bad > MAX_CONSECUTIVE_BAD_PACKETS:
                raise UndecodableAudio(
                    f"{path.name}: more than {MAX_CONSECUTIVE_BAD_PACKETS} consecutive packets"
                    " failed to decode"
                ) from None
            continue
        consecutive_bad = 0
        for frame in frames:
            decoded += 1
            yield frame
    if truncated:
        # Demuxing stopped before the end-of-stream flush packet: drain the decoder by hand.
        yield from stream.decode(None)
    if bad or truncated:
        _log.warning(
            "audio_damaged", file=path.name, bad_packets=bad, truncated=truncated, frames=decoded
        )


def _pcm_view(frame: Any, channel: int | None = None, *, mix: bool = False) -> memoryview:
    if mix:
        # Packed s16, one column per channel; their mean is the downmix (int32 cannot
        # overflow for any channel count FFmpeg allows). Not planar: PyAV's `planes` and
        # `to_ndarray` of a planar frame go wrong past 8 channels (it segfaults).
        channels = frame.layout.nb_channels
        raw = memoryview(frame.planes[0])[: frame.samples * channels * SAMPLE_WIDTH]
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
        mean = samples.sum(axis=1, dtype=np.int32) // channels
        return memoryview(mean.astype("<i2").tobytes())
    # The plane buffer is padded for SIMD; only samples * width bytes are audio.
    return memoryview(frame.planes[channel or 0])[: frame.samples * SAMPLE_WIDTH]


# FFmpeg guesses a layout for an unnamed channel order (a plain WAV's) only up to this many
# channels; with more (a 9-, 32- or 64-channel recorder's WAV) its resampler cannot downmix
# and fails with "Invalid argument".
_GUESSED_LAYOUT_MAX = 8


def _unnamed_many(stream: Any) -> bool:
    layout = stream.codec_context.layout
    return bool(
        layout.nb_channels > _GUESSED_LAYOUT_MAX
        and any(ch.name == "NONE" for ch in layout.channels)
    )


def _declared_duration(container: Any, stream: Any) -> float | None:
    if container.format.name in _GUESSED_DURATION_FORMATS:
        return None
    candidates: list[float] = []
    if stream.duration is not None and stream.time_base is not None:
        candidates.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        candidates.append(container.duration / av.time_base)
    for seconds in candidates:
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


def declared_header(path: Path) -> Header:
    """What the container's header says (FFmpeg's reading, no decoding): any format, where
    `libs.audio.header.read_header` reads only a few; duration None when it does not say."""
    with _open(path) as container:
        stream = _audio_stream(container, path)
        return Header(
            sample_rate=int(stream.codec_context.sample_rate or 0) or None,
            channels=int(stream.codec_context.channels or 0) or None,
            duration=_declared_duration(container, stream),
        )


def decoded_duration(path: Path, *, limit: float) -> float:
    """The duration measured by decoding (no resampling), stopping with `AudioTooLong` as soon
    as it is over `limit` seconds: the cost is bounded by the limit, not by the file."""
    return _decoded_duration(path, limit)


def _decoded_duration(path: Path, limit: float | None = None) -> float:
    seconds = 0.0
    with _open(path) as container:
        stream = _audio_stream(container, path)
        with _translated_errors(path):
            for frame in _frames(container, stream, path):
                # Native rate per frame: a stream may change rate mid-file (it happens with
                # concatenated recordings), so sum seconds rather than samples.
                seconds += frame.samples / frame.sample_rate
                if limit is not None and seconds > limit:
                    raise AudioTooLong(too_long_detail(seconds, limit, at_least=True))
    return seconds


def _open(path: Path) -> Any:
    # Python's own open reports a missing or unreadable file as the OSError it is. Once the file
    # is known to be readable, every FFmpeg error is about the bytes in it: FFmpeg reuses errno
    # codes (EPERM, EIO, ...) for media problems, so they cannot be told apart afterwards.
    with path.open("rb"):
        pass
    with _translated_errors(path):
        # Tags in legacy encodings must not make an otherwise fine file undecodable.
        return av.open(str(path), mode="r", metadata_errors="ignore")


def _audio_stream(container: Any, path: Path) -> Any:
    if not container.streams.audio:
        raise UndecodableAudio(f"{path.name}: no audio stream")
    return container.streams.audio[0]


@contextmanager
def _translated_errors(path: Path) -> Iterator[None]:
    """Map FFmpeg failures about the media to `UndecodableAudio`; leave the machine's alone."""
    try:
        yield
    except av.error.MemoryError:
        raise
    except av.error.FFmpegError as exc:
        # strerror, not str(exc): the latter embeds the full local path and FFmpeg's errno.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UndecodableAudio(f"{path.name}: {reason}") from exc
