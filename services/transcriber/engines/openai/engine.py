"""`OpenAIEngine`: builds the transcription request, calls the SDK once, reads the answer.

Retries belong to the JetStream consumer (nak with a delay), so the SDK client must be built
with `max_retries=0`; failures are translated by `errors.classify_openai_error`.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import openai
import structlog
from openai import AsyncOpenAI

from libs.audio.decode import UndecodableAudio, probe_duration
from libs.transcript import EngineMetadata, Segment, Transcript, Utterance, Word
from libs.transcript.conversation import speaker_label
from services.transcriber.engines.base import (
    Engine,
    EngineOptions,
    OutputShape,
    Timestamps,
    TransientEngineError,
    UploadLimits,
)
from services.transcriber.engines.languages import normalize_language
from services.transcriber.engines.openai.errors import classify_openai_error
from services.transcriber.engines.openai.models import (
    DEFAULT_MODEL,
    LIMITS,
    ResponseFormat,
    output_shape,
    response_format_for,
    takes_prompt,
)

# Long uploads of up to 25 MB plus server-side transcription can legitimately take minutes.
DEFAULT_TIMEOUT = 600.0
# A dead host should fail fast even when the read timeout is generous.
CONNECT_TIMEOUT = 10.0
# The SDK refuses to build a client without a key; self-hosted servers usually ignore it.
PLACEHOLDER_API_KEY = "not-needed"

log = structlog.get_logger(__name__)


class _RawWord(msgspec.Struct):
    word: str
    start: float
    end: float


class _RawSegment(msgspec.Struct):
    start: float
    end: float
    text: str
    id: int | None = None


class _Usage(msgspec.Struct):
    # "duration" (Whisper, billed per second) or "tokens" (gpt-4o models).
    type: str | None = None
    seconds: float | None = None


class _VerboseResponse(msgspec.Struct):
    """Whisper's verbose_json; lenient because compatible servers omit optional parts."""

    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[_RawSegment] | None = None
    words: list[_RawWord] | None = None
    usage: _Usage | None = None


class _DiarizedSegment(msgspec.Struct):
    start: float
    end: float
    text: str
    speaker: str


class _DiarizedResponse(msgspec.Struct):
    """gpt-4o-transcribe-diarize's diarized_json: speaker-labelled segments, no words."""

    text: str
    duration: float | None = None
    segments: list[_DiarizedSegment] | None = None
    usage: _Usage | None = None


class _JsonResponse(msgspec.Struct):
    text: str
    usage: _Usage | None = None


class OpenAIEngine:
    """Transcribes with `audio.transcriptions.create`; one HTTP request per call, no retries."""

    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        default_model: str = DEFAULT_MODEL,
        limits: UploadLimits = LIMITS,
    ) -> None:
        if client.max_retries != 0:
            # SDK retries would sleep inside our ack window and hide 429s from the consumer's
            # backoff; the consumer naks with a delay instead.
            raise ValueError("OpenAIEngine needs a client built with max_retries=0")
        self._client = client
        self._default_model = default_model
        self.limits: UploadLimits | None = limits

    @classmethod
    def from_settings(
        cls,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        default_model: str = DEFAULT_MODEL,
    ) -> OpenAIEngine:
        return cls(build_client(api_key, base_url, timeout), default_model=default_model)

    @property
    def default_model(self) -> str:
        return self._default_model

    def output_shape(self, model: str, timestamps: Timestamps) -> OutputShape:
        return output_shape(model, timestamps)

    async def check_credentials(self) -> bool:
        """Ask `GET /models`, the cheapest authenticated call: False only on 401/403.

        Servers without that route (404) or unreachable ones say nothing about the key, so they
        count as "not rejected"; the next job finds out for real.
        """
        try:
            await self._client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            log.error("openai_credentials_still_rejected", status=exc.status_code)
            return False
        except openai.OpenAIError as exc:
            log.warning("openai_credentials_unverified", error=type(exc).__name__)
        return True

    async def aclose(self) -> None:
        await self._client.close()

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        model = options.model or self.default_model
        response_format = response_format_for(model)
        bound = log.bind(model=model, audio=audio.name, response_format=response_format)
        prompt = options.prompt if options.prompt and takes_prompt(model) else None
        raw, latency_ms = await self._request(audio, model, response_format, options, prompt, bound)
        request_id = raw.request_id
        payload, parsed = _parse_response(raw.content, response_format, request_id)
        metadata = _metadata(payload, request_id, latency_ms, response_format, options, prompt)
        processing_ms = raw.headers.get("openai-processing-ms")
        if processing_ms is not None and processing_ms.isdigit():
            # Server-side model time; latency_ms minus this is upload and queueing.
            metadata = msgspec.structs.replace(metadata, processing_ms=int(processing_ms))

        if isinstance(parsed, _VerboseResponse):
            transcript = await self._from_verbose(parsed, audio, model, options, metadata)
        elif isinstance(parsed, _DiarizedResponse):
            transcript = await self._from_diarized(parsed, audio, model, options, metadata)
        else:
            transcript = await self._from_text(parsed, audio, model, options, metadata)
        bound.info(
            "openai_transcribed",
            request_id=request_id,
            latency_ms=latency_ms,
            audio_seconds=transcript.duration,
            segments=len(transcript.segments),
        )
        return transcript

    async def _request(
        self,
        audio: Path,
        model: str,
        response_format: ResponseFormat,
        options: EngineOptions,
        prompt: str | None,
        bound: Any,
    ) -> tuple[Any, float]:
        """Send the one transcription request; the raw response and its latency in ms.

        SDK errors are classified (`classify_openai_error`), logged and raised as engine errors.
        """
        granularities: list[Literal["word", "segment"]] = (
            ["segment", "word"] if options.timestamps == "word" else ["segment"]
        )
        content_type = mimetypes.guess_type(audio.name)[0] or "application/octet-stream"
        # An open file (not bytes, not a Path: the SDK reads a Path fully into memory) lets
        # the HTTP client stream the upload from disk in 64 KiB chunks.
        fh = await asyncio.to_thread(audio.open, "rb")
        started = time.perf_counter()
        try:
            with fh:
                raw = await self._client.audio.transcriptions.with_raw_response.create(
                    # OpenAI infers the container from the filename's extension.
                    file=(audio.name, fh, content_type),
                    model=model,
                    response_format=response_format,
                    language=options.language or openai.omit,
                    prompt=prompt if prompt is not None else openai.omit,
                    timestamp_granularities=(
                        granularities if response_format == "verbose_json" else openai.omit
                    ),
                    # Required by the diarizing model above 30 s of audio, harmless below (the
                    # server cuts at pauses; our chunks are at most ~10 minutes).
                    chunking_strategy=(
                        "auto" if response_format == "diarized_json" else openai.omit
                    ),
                )
        except openai.OpenAIError as exc:
            error = classify_openai_error(exc)
            bound.warning(
                "openai_transcription_failed",
                error_code=error.code,
                error_class=type(error).__name__,
                status=getattr(exc, "status_code", None),
                request_id=getattr(exc, "request_id", None),
                retry_after=getattr(error, "retry_after", None),
                latency_ms=_ms_since(started),
                detail=error.detail,
            )
            raise error from exc
        return raw, _ms_since(started)

    async def _from_verbose(
        self,
        parsed: _VerboseResponse,
        audio: Path,
        model: str,
        options: EngineOptions,
        metadata: EngineMetadata,
    ) -> Transcript:
        text = parsed.text.strip()
        duration, metadata = await self._duration(parsed.duration, audio, parsed.usage, metadata)
        segments = tuple(
            Segment(
                id=s.id if s.id is not None else i, start=s.start, end=s.end, text=s.text.strip()
            )
            for i, s in enumerate(parsed.segments or ())
        )
        if not segments and text:
            # Some compatible servers ignore timestamp_granularities; keep the text renderable.
            segments = (Segment(id=0, start=0.0, end=duration, text=text),)
        words: tuple[Word, ...] | None = None
        if options.timestamps == "word":
            words = tuple(
                Word(start=w.start, end=w.end, word=w.word.strip()) for w in parsed.words or ()
            )
        return Transcript(
            text=text,
            language=normalize_language(parsed.language) or options.language,
            duration=duration,
            segments=segments,
            words=words,
            model=model,
            engine=self.name,
            engine_metadata=metadata,
        )

    async def _from_diarized(
        self,
        parsed: _DiarizedResponse,
        audio: Path,
        model: str,
        options: EngineOptions,
        metadata: EngineMetadata,
    ) -> Transcript:
        text = parsed.text.strip()
        duration, metadata = await self._duration(parsed.duration, audio, parsed.usage, metadata)
        raw = [s for s in parsed.segments or () if s.text.strip()]
        segments = tuple(
            Segment(id=i, start=s.start, end=max(s.start, s.end), text=s.text.strip())
            for i, s in enumerate(raw)
        )
        # The model labels voices A, B, ... within this request (or by known speaker name).
        utterances = tuple(
            Utterance(
                speaker=speaker_label(s.speaker),
                start=s.start,
                end=max(s.start, s.end),
                text=" ".join(s.text.split()),
            )
            for s in raw
        )
        metadata = msgspec.structs.replace(metadata, speakers="diarization")
        return Transcript(
            text=text,
            # diarized_json does not report the language; echo it only if the caller fixed it.
            language=options.language,
            duration=duration,
            segments=segments,
            # The diarizing model gives no word timestamps, whatever was asked.
            words=None,
            model=model,
            engine=self.name,
            engine_metadata=metadata,
            utterances=utterances,
        )

    async def _from_text(
        self,
        parsed: _JsonResponse,
        audio: Path,
        model: str,
        options: EngineOptions,
        metadata: EngineMetadata,
    ) -> Transcript:
        text = parsed.text.strip()
        # The gpt-4o models return no timing at all, so the only honest segment spans the file.
        duration, metadata = await self._local_duration(audio, parsed.usage, metadata)
        segments = (Segment(id=0, start=0.0, end=duration, text=text),) if text else ()
        return Transcript(
            text=text,
            # These models do not report the language; echo it only if the caller fixed it.
            language=options.language,
            duration=duration,
            segments=segments,
            words=None,
            model=model,
            engine=self.name,
            engine_metadata=metadata,
        )

    async def _duration(
        self, reported: float | None, audio: Path, usage: _Usage | None, metadata: EngineMetadata
    ) -> tuple[float, EngineMetadata]:
        """The duration the server reported, else the file's own (`_local_duration`)."""
        if reported is not None:
            return reported, metadata
        return await self._local_duration(audio, usage, metadata)

    async def _local_duration(
        self, audio: Path, usage: _Usage | None, metadata: EngineMetadata
    ) -> tuple[float, EngineMetadata]:
        """The file's own duration; if it cannot be read, what was billed (the metadata then
        says `duration_unknown`)."""
        try:
            return await asyncio.to_thread(probe_duration, audio), metadata
        except UndecodableAudio as exc:
            # The provider already decoded and transcribed the file, so keep the (paid-for)
            # text and settle for the billed seconds, or 0 when the model bills tokens.
            seconds = usage.seconds if usage is not None else None
            metadata = msgspec.structs.replace(metadata, duration_unknown=seconds is None)
            log.warning(
                "openai_duration_probe_failed", audio=audio.name, error=str(exc), fallback=seconds
            )
            return (seconds if seconds is not None else 0.0), metadata


if TYPE_CHECKING:
    # mypy proves here that the class implements every member of `Engine`.
    _engine: type[Engine] = OpenAIEngine


def build_client(
    api_key: str | None, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> AsyncOpenAI:
    """An AsyncOpenAI client for the engine: no SDK retries, fast connect, long read timeout.

    `base_url=None` keeps the SDK default, which honours OPENAI_BASE_URL. With a custom
    base URL and no key a placeholder is sent, since self-hosted servers rarely check it;
    against OpenAI itself a missing key still fails at construction (fail fast at startup).
    """
    if not api_key and base_url:
        api_key = PLACEHOLDER_API_KEY
    limits = openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
    return AsyncOpenAI(
        api_key=api_key or None,
        base_url=base_url or None,
        timeout=limits,
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(timeout=limits),
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _parse_response(
    content: bytes, response_format: str, request_id: str | None
) -> tuple[Any, _VerboseResponse | _DiarizedResponse | _JsonResponse]:
    """The decoded JSON and its typed reading for `response_format`; unreadable is transient."""
    parsed: _VerboseResponse | _DiarizedResponse | _JsonResponse
    try:
        payload: Any = msgspec.json.decode(content)
        if response_format == "verbose_json":
            parsed = msgspec.convert(payload, _VerboseResponse)
        elif response_format == "diarized_json":
            parsed = msgspec.convert(payload, _DiarizedResponse)
        else:
            parsed = msgspec.convert(payload, _JsonResponse)
    except msgspec.DecodeError as exc:
        # A 200 we cannot read is the server's fault; a later attempt may well succeed.
        raise TransientEngineError(
            f"unreadable {response_format} response from OpenAI (request_id={request_id}): {exc}",
            code="invalid_response",
        ) from exc
    return payload, parsed


def _metadata(
    payload: Any,
    request_id: str | None,
    latency_ms: float,
    response_format: str,
    options: EngineOptions,
    prompt: str | None,
) -> EngineMetadata:
    """The engine metadata every OpenAI transcript carries (the raw answer, timings, prompt)."""
    return EngineMetadata(
        raw_response=payload,
        request_id=request_id,
        latency_ms=latency_ms,
        response_format=response_format,
        # A model that takes no prompt (the diarizing one) is not sent it, and says so.
        prompt=("sent" if prompt is not None else "ignored") if options.prompt else None,
    )
