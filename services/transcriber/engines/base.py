"""The one interface every transcription engine implements, and how engines report failure."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import msgspec

from libs.transcript import Transcript

Timestamps = Literal["none", "segment", "word"]


class EngineOptions(msgspec.Struct, frozen=True, kw_only=True):
    model: str | None = None
    language: str | None = None
    timestamps: Timestamps = "segment"
    # Vocabulary or context to steer the model (names, products, spellings); engines whose
    # model takes no prompt ignore it and say so in the transcript's metadata.
    prompt: str | None = None


class EngineError(Exception):
    """Base for engine failures; subclasses say what the consumer should do about them."""

    code: str = "engine_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class TransientEngineError(EngineError):
    """Worth retrying later (429, 5xx, timeouts, connection errors)."""

    code = "engine_unavailable"

    def __init__(
        self, detail: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class PermanentEngineError(EngineError):
    """Retrying cannot help (invalid or undecodable media, unsupported model)."""

    code = "invalid_media"


class EngineAuthError(EngineError):
    """Credentials rejected: pause consumption instead of failing every job."""

    code = "engine_auth"


ChunkEncoding = Literal["opus", "pcm"]


class UploadLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What an engine takes in one request; longer or bigger audio is split first.

    For a remote API these are its upload limits. For a local engine they bound its memory:
    one request is decoded whole, so `max_seconds` is the most audio it ever holds at once.
    """

    max_bytes: int
    max_seconds: float
    # File extensions (lower case, no dot) the engine decodes; others are transcoded.
    # None: it decodes every container the gateway accepts.
    extensions: frozenset[str] | None
    # How chunks of a split recording are written: "opus" keeps uploads small (remote APIs),
    # "pcm" (16-bit WAV) costs nothing to decode and loses nothing (local engines).
    chunk_encoding: ChunkEncoding = "opus"
    # At most this many chunks of one recording in flight (None: the split policy's own
    # bound). A local engine that runs one request at a time says 1, so chunks are not
    # transcoded far ahead of the engine.
    parallel_chunks: int | None = None


class OutputShape(msgspec.Struct, frozen=True, kw_only=True):
    """What a transcript will carry, known before the request is sent."""

    # The form the engine asks its backend to answer in (OpenAI: the `response_format`);
    # None for an engine with no such choice (the offline engine).
    response_format: str | None
    # Segments carry the times they were heard; False: segments have no times of their own
    # (there are none, or one spanning the whole file).
    segment_timings: bool
    # Word-level timings are present (`Transcript.words` is not None).
    word_timings: bool


class Engine(Protocol):
    """Everything the worker may ask of an engine; it never inspects a concrete engine."""

    name: str
    # None: the engine streams audio of any length and format itself (the offline engine).
    limits: UploadLimits | None

    @property
    def default_model(self) -> str:
        """The model a request without one (`EngineOptions.model` None) runs on."""
        ...

    def output_shape(self, model: str, timestamps: Timestamps) -> OutputShape:
        """What transcribing with `model` and `timestamps` yields, e.g. whether chunks of a
        split recording carry timings to merge by (or only text to stitch)."""
        ...

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript: ...

    async def check_credentials(self) -> bool:
        """False only when the engine's credentials are known to be rejected right now."""
        ...
