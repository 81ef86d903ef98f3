"""Limits on the work one recording can cause: its length and its sample rate.

One rule for both sides: ingest refuses at submit what the header already tells
(`read_header`), the transcriber refuses what it learns from the header or, when the container
does not say, while decoding. A 766 KB WAV labelled 1 Hz is 106 hours of audio once resampled;
nothing real is recorded below 2 kHz (telephony's narrowest is 8 kHz) or above 384 kHz
(the highest rate studio converters offer).
"""

from __future__ import annotations

import msgspec

from libs.audio.header import Header

# Eight hours: a full working shift recorded in one file; longer is a mistake or an attack.
DEFAULT_MAX_SECONDS = 8 * 3600
MIN_SAMPLE_RATE = 2_000
MAX_SAMPLE_RATE = 384_000


class AudioRefused(Exception):
    """The recording is refused before (or while) it is transcribed; `code` is stable."""

    code = "audio_refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AudioTooLong(AudioRefused):
    code = "audio_too_long"


class UnsupportedSampleRate(AudioRefused):
    code = "unsupported_sample_rate"


class AudioLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_seconds: float = DEFAULT_MAX_SECONDS
    min_sample_rate: int = MIN_SAMPLE_RATE
    max_sample_rate: int = MAX_SAMPLE_RATE

    def check(self, header: Header) -> None:
        """Raise `UnsupportedSampleRate` or `AudioTooLong` for what the header says; a field it
        does not say passes (decoding tells later)."""
        rate = header.sample_rate
        if rate is not None and not self.min_sample_rate <= rate <= self.max_sample_rate:
            raise UnsupportedSampleRate(
                f"the audio's header says {rate} Hz; sample rates from {self.min_sample_rate}"
                f" to {self.max_sample_rate} Hz are accepted"
            )
        if header.duration is not None:
            self.check_seconds(header.duration)

    def check_seconds(self, seconds: float) -> None:
        if seconds > self.max_seconds:
            raise AudioTooLong(too_long_detail(seconds, self.max_seconds))


def too_long_detail(seconds: float, limit: float, *, at_least: bool = False) -> str:
    what = "at least " if at_least else ""
    return (
        f"the audio is {what}{seconds:.0f} s long; at most {limit:.0f} s (MAX_AUDIO_SECONDS)"
        " is accepted"
    )
