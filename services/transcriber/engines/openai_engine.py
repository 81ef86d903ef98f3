"""OpenAI speech-to-text (or any OpenAI-compatible server) behind the `Engine` protocol.

Retries belong to the JetStream consumer (nak with a delay), so the SDK client must be built
with `max_retries=0` and every SDK failure is translated into an `EngineError` subclass that
tells the consumer whether to nak (transient), term (permanent) or pause (auth).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import mimetypes
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import msgspec
import openai
import structlog
from openai import AsyncOpenAI

from libs.audio.decode import UndecodableAudio, probe_duration
from libs.transcript import Segment, Transcript, Word
from services.transcriber.engines.base import (
    EngineAuthError,
    EngineError,
    EngineOptions,
    PermanentEngineError,
    TransientEngineError,
    UploadLimits,
)

DEFAULT_MODEL = "whisper-1"
# Long uploads of up to 25 MB plus server-side transcription can legitimately take minutes.
DEFAULT_TIMEOUT = 600.0
# A dead host should fail fast even when the read timeout is generous.
CONNECT_TIMEOUT = 10.0
# The SDK refuses to build a client without a key; self-hosted servers usually ignore it.
PLACEHOLDER_API_KEY = "not-needed"

_DETAIL_LIMIT = 500

log = structlog.get_logger(__name__)

ResponseFormat = Literal["json", "verbose_json"]

# OpenAI's documented limits: 25 MB per upload; the gpt-4o models also refuse audio longer
# than 1400 s ("audio duration ... is longer than 1400 seconds"). Extensions it decodes.
LIMITS = UploadLimits(
    max_bytes=25 * 1024 * 1024,
    max_seconds=1400.0,
    extensions=frozenset(
        {"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"}
    ),
)


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


class _JsonResponse(msgspec.Struct):
    text: str
    usage: _Usage | None = None


def response_format_for(model: str) -> ResponseFormat:
    """gpt-* transcription models only answer `json` (text, no timings); Whisper-style models,
    including those served by OpenAI-compatible servers, answer `verbose_json`."""
    return "json" if model.startswith("gpt-") else "verbose_json"


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
        self.default_model = default_model
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
        granularities: list[Literal["word", "segment"]] = (
            ["segment", "word"] if options.timestamps == "word" else ["segment"]
        )
        content_type = mimetypes.guess_type(audio.name)[0] or "application/octet-stream"
        bound = log.bind(model=model, audio=audio.name, response_format=response_format)

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
                    timestamp_granularities=(
                        granularities if response_format == "verbose_json" else openai.omit
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
        latency_ms = _ms_since(started)
        request_id = raw.request_id

        parsed: _VerboseResponse | _JsonResponse
        try:
            payload: Any = msgspec.json.decode(raw.content)
            if response_format == "verbose_json":
                parsed = msgspec.convert(payload, _VerboseResponse)
            else:
                parsed = msgspec.convert(payload, _JsonResponse)
        except msgspec.DecodeError as exc:
            # A 200 we cannot read is the server's fault; a later attempt may well succeed.
            raise TransientEngineError(
                f"unreadable {response_format} response from OpenAI"
                f" (request_id={request_id}): {exc}",
                code="invalid_response",
            ) from exc

        metadata: dict[str, Any] = {
            "raw_response": payload,
            "request_id": request_id,
            "latency_ms": latency_ms,
            "response_format": response_format,
        }
        processing_ms = raw.headers.get("openai-processing-ms")
        if processing_ms is not None and processing_ms.isdigit():
            # Server-side model time; latency_ms minus this is upload and queueing.
            metadata["processing_ms"] = int(processing_ms)

        if isinstance(parsed, _VerboseResponse):
            transcript = await self._from_verbose(parsed, audio, model, options, metadata)
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

    async def _from_verbose(
        self,
        parsed: _VerboseResponse,
        audio: Path,
        model: str,
        options: EngineOptions,
        metadata: dict[str, Any],
    ) -> Transcript:
        text = parsed.text.strip()
        duration = parsed.duration
        if duration is None:
            duration = await self._local_duration(audio, parsed.usage, metadata)
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

    async def _from_text(
        self,
        parsed: _JsonResponse,
        audio: Path,
        model: str,
        options: EngineOptions,
        metadata: dict[str, Any],
    ) -> Transcript:
        text = parsed.text.strip()
        # The gpt-4o models return no timing at all, so the only honest segment spans the file.
        duration = await self._local_duration(audio, parsed.usage, metadata)
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

    async def _local_duration(
        self, audio: Path, usage: _Usage | None, metadata: dict[str, Any]
    ) -> float:
        try:
            return await asyncio.to_thread(probe_duration, audio)
        except UndecodableAudio as exc:
            # The provider already decoded and transcribed the file, so keep the (paid-for)
            # text and settle for the billed seconds, or 0 when the model bills tokens.
            seconds = usage.seconds if usage is not None else None
            metadata["duration_unknown"] = seconds is None
            log.warning(
                "openai_duration_probe_failed", audio=audio.name, error=str(exc), fallback=seconds
            )
            return seconds if seconds is not None else 0.0


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


# -- error classification ------------------------------------------------------------------

# Markers OpenAI (and Whisper-compatible servers) use when the upload itself is the problem.
_MEDIA_CODES = frozenset({"audio_too_short", "invalid_file_format", "unsupported_file"})
_MEDIA_MARKERS = (
    "file format",
    "could not be decoded",
    "decode",
    "too short",
    "corrupt",
    "unsupported",
    "invalid file",
    "audio file",
)


def classify_openai_error(exc: openai.OpenAIError) -> EngineError:
    """Map an SDK exception to what the consumer should do: nak, term, or pause."""
    transport_error = _transport_error(exc)
    if isinstance(exc, openai.APITimeoutError) and (
        transport_error is None or isinstance(transport_error, TimeoutError)
    ):
        return TransientEngineError("OpenAI request timed out", code="timeout")
    if isinstance(exc, openai.APIConnectionError):
        cause = transport_error or exc.__cause__ or exc.__context__
        reason = f": {cause!r}" if cause is not None else ""
        return TransientEngineError(
            f"connection to {exc.request.url} failed{reason}", code="connection_error"
        )
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc)
    # Response validation errors and anything newer the SDK grows: retrying is the safe bet,
    # the consumer's max-deliver bound keeps it from looping forever.
    return TransientEngineError(
        f"unexpected OpenAI SDK error {type(exc).__name__}: {exc}", code="openai_error"
    )


def _transport_error(exc: BaseException) -> BaseException | None:
    """The aiohttp/OS error at the bottom of the SDK's exception chain, if any.

    The aiohttp transport reports every aiohttp connection error, a peer hanging up included,
    as a connect *timeout*; the original error tells what really happened.
    """
    found: BaseException | None = None
    seen: set[int] = set()
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientError | OSError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _classify_status(exc: openai.APIStatusError) -> EngineError:
    status = exc.status_code
    message = _error_message(exc)
    detail = f"OpenAI answered {status}: {message} (request_id={exc.request_id})"
    headers = exc.response.headers
    if status in (401, 403):
        # 403 also covers unsupported regions and revoked project access: like a bad key,
        # no job can succeed until an operator acts, hence pause rather than fail jobs.
        return EngineAuthError(detail, code=None if status == 401 else "engine_forbidden")
    if status == 429:
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            retry_after = _rate_limit_reset(headers)
        # Quota exhaustion is a billing problem, not a burst: give it its own code so
        # dashboards and alerts can tell the two apart.
        code = "insufficient_quota" if exc.code == "insufficient_quota" else "rate_limited"
        return TransientEngineError(detail, code=code, retry_after=retry_after)
    if status >= 500:
        return TransientEngineError(
            detail, code="server_error", retry_after=parse_retry_after(headers)
        )
    if status == 413:
        return PermanentEngineError(detail, code="too_large")
    if status == 404:
        if exc.code == "model_not_found" or "model" in message.lower():
            return PermanentEngineError(detail, code="model_not_found")
        # Usually a base URL without /v1: every job will fail the same way.
        return PermanentEngineError(
            f"{detail}; check the base URL ({exc.request.url})", code="not_found"
        )
    if status == 400:
        lowered = message.lower()
        if "longer than" in lowered and "maximum" in lowered:
            return PermanentEngineError(detail, code="too_long")
        if (
            exc.param == "file"
            or exc.code in _MEDIA_CODES
            or any(m in lowered for m in _MEDIA_MARKERS)
        ):
            return PermanentEngineError(detail, code="invalid_media")
        # The request itself is wrong (e.g. a format the model does not support): resending
        # the same request cannot succeed.
        return PermanentEngineError(detail, code="invalid_request")
    return TransientEngineError(
        detail, code=f"http_{status}", retry_after=parse_retry_after(headers)
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body.strip():
        return body.strip()[:_DETAIL_LIMIT]
    return exc.message[:_DETAIL_LIMIT]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's, preferred) or `Retry-After`
    (delta-seconds or an HTTP date); None when absent or unparseable."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000.0, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """OpenAI's 429s often carry no Retry-After, only `x-ratelimit-reset-*` ("6m0s", "20ms")
    for whichever budget ran out."""
    for budget in ("requests", "tokens"):
        if headers.get(f"x-ratelimit-remaining-{budget}") == "0":
            reset = headers.get(f"x-ratelimit-reset-{budget}")
            if reset:
                parts = _DURATION_PART.findall(reset)
                if parts and "".join(n + u for n, u in parts) == reset.strip():
                    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return None


def _finite(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# Whisper's verbose_json names the language ("english"); the rest of the pipeline and the
# other engines use ISO-639-1 codes. Table from Whisper's tokenizer.
_WHISPER_LANGUAGES = {
    "english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru",
    "korean": "ko", "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr",
    "polish": "pl", "catalan": "ca", "dutch": "nl", "arabic": "ar", "swedish": "sv",
    "italian": "it", "indonesian": "id", "hindi": "hi", "finnish": "fi", "vietnamese": "vi",
    "hebrew": "he", "ukrainian": "uk", "greek": "el", "malay": "ms", "czech": "cs",
    "romanian": "ro", "danish": "da", "hungarian": "hu", "tamil": "ta", "norwegian": "no",
    "thai": "th", "urdu": "ur", "croatian": "hr", "bulgarian": "bg", "lithuanian": "lt",
    "latin": "la", "maori": "mi", "malayalam": "ml", "welsh": "cy", "slovak": "sk",
    "telugu": "te", "persian": "fa", "latvian": "lv", "bengali": "bn", "serbian": "sr",
    "azerbaijani": "az", "slovenian": "sl", "kannada": "kn", "estonian": "et",
    "macedonian": "mk", "breton": "br", "basque": "eu", "icelandic": "is", "armenian": "hy",
    "nepali": "ne", "mongolian": "mn", "bosnian": "bs", "kazakh": "kk", "albanian": "sq",
    "swahili": "sw", "galician": "gl", "marathi": "mr", "punjabi": "pa", "sinhala": "si",
    "khmer": "km", "shona": "sn", "yoruba": "yo", "somali": "so", "afrikaans": "af",
    "occitan": "oc", "georgian": "ka", "belarusian": "be", "tajik": "tg", "sindhi": "sd",
    "gujarati": "gu", "amharic": "am", "yiddish": "yi", "lao": "lo", "uzbek": "uz",
    "faroese": "fo", "haitian creole": "ht", "pashto": "ps", "turkmen": "tk", "nynorsk": "nn",
    "maltese": "mt", "sanskrit": "sa", "luxembourgish": "lb", "myanmar": "my", "tibetan": "bo",
    "tagalog": "tl", "malagasy": "mg", "assamese": "as", "tatar": "tt", "hawaiian": "haw",
    "lingala": "ln", "hausa": "ha", "bashkir": "ba", "javanese": "jw", "sundanese": "su",
    "cantonese": "yue",
}  # fmt: skip


def normalize_language(language: str | None) -> str | None:
    """ISO-639-1 code for Whisper's language name; codes and unknown names pass through."""
    if not language:
        return None
    cleaned = language.strip().lower()
    return _WHISPER_LANGUAGES.get(cleaned, cleaned)
