"""An OpenAI-compatible `/v1/audio/transcriptions` and `/v1/chat/completions` server for tests
and benchmarks (chat completions: tests/fakes/chat.py, structured outputs checked as OpenAI does).

It speaks real HTTP with real multipart parsing, so the actual `openai` SDK (and any other
client) can be pointed at it with `base_url`. Tests script faults (429, 5xx, 400, 401, hangs,
dropped connections) and inspect what the client really sent.

In tests::

    async with FakeOpenAIServer(latency=0.05) as server:
        client = AsyncOpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
        server.fail_next(Fault.rate_limited(retry_after=2))
        ...
        assert server.requests[0].model == "whisper-1"

From a bench script (separate process)::

    python -m tests.fakes.openai_server --port 8089 --latency 1.0

`GET /_fake/stats` then reports request counts and the maximum concurrency seen, and
`POST /_fake/reset` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import math
import signal
import time
import uuid
import wave
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import BodyPartReader, hdrs, web

from tests.fakes import chat

# What OpenAI accepted when this was written; the fake rejects anything else with the same
# 404 body OpenAI sends, so a typo in a model name fails in tests, not in production.
OPENAI_TRANSCRIPTION_MODELS = frozenset(
    {
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe-diarize",
        "gpt-transcribe",
    }
)
# OpenAI decides the container from the filename extension, not from the bytes.
SUPPORTED_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
RESPONSE_FORMATS = frozenset({"json", "text", "srt", "vtt", "verbose_json", "diarized_json"})
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
# gpt-4o-transcribe-diarize: diarized_json segments carry a speaker; it needs
# chunking_strategy above 30 s of audio, takes no prompt and at most 4 known speakers.
DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
DIARIZE_UNCHUNKED_SECONDS = 30.0
MAX_KNOWN_SPEAKERS = 4
DEFAULT_API_KEY = "sk-fake-openai-key"

# verbose_json reports the language by name, as Whisper does, not by ISO code.
_LANGUAGE_NAMES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "pl": "polish",
    "ru": "russian",
    "uk": "ukrainian",
    "tr": "turkish",
    "ar": "arabic",
    "zh": "chinese",
    "ja": "japanese",
    "ko": "korean",
    "hi": "hindi",
}

TranscriptFn = Callable[["RecordedRequest", bytes], str]


def openai_error(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope; the SDK lifts `error.code`/`error.param` onto its exceptions."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One scripted misbehaviour, consumed by the next request that passes authentication.

    `status=None` means "answer normally after `delay`": with a delay longer than the
    client's timeout that is a hang. `disconnect=True` drops the connection without answering.
    Any status/body pair works, e.g. `Fault(status=200, body={"bogus": 1})` for a malformed
    success; a `str` body is sent as HTML, like a proxy's error page. `hold`: the request is
    held (received, not answered) until the test sets that event, then handled as above.
    """

    status: int | None = None
    body: Mapping[str, Any] | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    disconnect: bool = False
    hold: asyncio.Event | None = None

    @classmethod
    def rate_limited(
        cls, *, retry_after: float | str | None = 1, retry_after_ms: float | None = None
    ) -> Fault:
        headers = {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "0"}
        if retry_after is not None:
            headers["retry-after"] = (
                retry_after if isinstance(retry_after, str) else _header_number(retry_after)
            )
        if retry_after_ms is not None:
            headers["retry-after-ms"] = _header_number(retry_after_ms)
        return cls(
            status=429,
            headers=headers,
            body=openai_error(
                "Rate limit reached for whisper-1 in organization org-fake on requests per min"
                " (RPM): Limit 50, Used 50, Requested 1. Please try again in 1.2s.",
                type="requests",
                code="rate_limit_exceeded",
            ),
        )

    @classmethod
    def insufficient_quota(cls) -> Fault:
        return cls(
            status=429,
            body=openai_error(
                "You exceeded your current quota, please check your plan and billing details.",
                type="insufficient_quota",
                code="insufficient_quota",
            ),
        )

    @classmethod
    def server_error(cls, status: int = 500, *, retry_after: float | None = None) -> Fault:
        headers = {} if retry_after is None else {"retry-after": _header_number(retry_after)}
        message = (
            "The server is overloaded or not ready yet."
            if status == 503
            else "The server had an error while processing your request. Sorry about that!"
        )
        return cls(status=status, headers=headers, body=openai_error(message, type="server_error"))

    @classmethod
    def unavailable(cls, *, retry_after: float | None = None) -> Fault:
        return cls.server_error(503, retry_after=retry_after)

    @classmethod
    def bad_gateway_html(cls) -> Fault:
        """A proxy in front of the API answering with HTML rather than OpenAI's JSON."""
        return cls(status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>")

    @classmethod
    def invalid_file(cls) -> Fault:
        formats = repr(list(SUPPORTED_EXTENSIONS))
        return cls(
            status=400,
            body=openai_error(
                f"Invalid file format. Supported formats: {formats}",
                type="invalid_request_error",
            ),
        )

    @classmethod
    def undecodable(cls) -> Fault:
        return cls(
            status=400,
            body=openai_error(
                "Audio file could not be decoded or its format is not supported.",
                type="invalid_request_error",
                param="file",
                code="invalid_value",
            ),
        )

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls(
            status=401,
            body=openai_error(
                "Incorrect API key provided: sk-revo***oked. You can find your API key at"
                " https://platform.openai.com/account/api-keys.",
                type="invalid_request_error",
                code="invalid_api_key",
            ),
        )

    @classmethod
    def forbidden(cls) -> Fault:
        return cls(
            status=403,
            body=openai_error(
                "Country, region, or territory not supported",
                type="request_forbidden",
                code="unsupported_country_region_territory",
            ),
        )

    @classmethod
    def too_large(cls) -> Fault:
        return cls(
            status=413,
            body=openai_error(
                f"Maximum content size limit ({MAX_UPLOAD_BYTES}) exceeded.",
                type="server_error",
            ),
        )

    @classmethod
    def held(cls, until: asyncio.Event) -> Fault:
        """Answer normally, once `until` is set (the engine "working" as long as a test needs)."""
        return cls(hold=until)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls(delay=seconds)

    @classmethod
    def drop_connection(cls) -> Fault:
        return cls(disconnect=True)


@dataclass
class RecordedRequest:
    """What one request carried, as the server parsed it (filled in while it is handled)."""

    request_id: str
    method: str
    path: str
    content_type: str
    authorization: str | None
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    file_size: int = 0
    file_content_type: str | None = None
    file_sha256: str | None = None
    status: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def value(self, name: str) -> str | None:
        """The last value sent for a form field (what a server would use)."""
        values = self.fields.get(name)
        return values[-1] if values else None

    @property
    def model(self) -> str | None:
        return self.value("model")

    @property
    def response_format(self) -> str:
        return self.value("response_format") or "json"

    @property
    def language(self) -> str | None:
        return self.value("language")

    @property
    def prompt(self) -> str | None:
        return self.value("prompt")

    @property
    def temperature(self) -> float | None:
        value = self.value("temperature")
        return None if value is None else float(value)

    @property
    def timestamp_granularities(self) -> list[str]:
        return self.fields.get("timestamp_granularities[]", [])

    @property
    def chunking_strategy(self) -> str | None:
        return self.value("chunking_strategy")

    @property
    def known_speaker_names(self) -> list[str]:
        return self.fields.get("known_speaker_names[]", [])

    @property
    def known_speaker_references(self) -> list[str]:
        return self.fields.get("known_speaker_references[]", [])


class FakeOpenAIServer:
    """OpenAI-compatible transcription server on 127.0.0.1; every knob is a public attribute.

    Text precedence for a successful answer: a text queued with `queue_texts`, then
    `transcript_fn(request, audio_bytes)`, then `fixed_text`, then a deterministic text derived
    from the upload (its size and hash), so different chunks get different, checkable texts.
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        latency: float = 0.0,
        fixed_text: str | None = None,
        transcript_fn: TranscriptFn | None = None,
        duration: float | None = None,
        language: str = "en",
        models: frozenset[str] | None = OPENAI_TRANSCRIPTION_MODELS,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        host: str = "127.0.0.1",
        port: int = 0,
        chat_fn: chat.ChatFn | None = None,
        chat_models: frozenset[str] | None = None,
        structured_outputs: bool = True,
    ) -> None:
        # None disables the Authorization check (for clients that send no key at all).
        self.api_key = api_key
        self.latency = latency
        self.fixed_text = fixed_text
        self.transcript_fn = transcript_fn
        # None: read it from the WAV header, else estimate from the size.
        self.duration = duration
        self.language = language
        # None accepts any model name, like most self-hosted OpenAI-compatible servers.
        self.models = models
        self.max_upload_bytes = max_upload_bytes
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: deque[Fault] = deque()
        self._texts: deque[str] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        # Chat completions (tests/fakes/chat.py): `chat_fn(request)` answers (else an instance
        # of the requested schema); `chat_models` None accepts any model; `structured_outputs`
        # False refuses response_format json_schema like a server without structured outputs.
        self.chat_fn = chat_fn
        self.chat_models = chat_models
        self.structured_outputs = structured_outputs
        self.chat_requests: list[chat.ChatRequest] = []
        self._replies: deque[chat.ChatReply] = deque()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's `base_url` (or OPENAI_BASE_URL)."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_fake/stats", self._stats)
        app.router.add_post("/_fake/reset", self._reset)
        self._closing.clear()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        # Wake hanging handlers first so shutdown does not wait out their delay.
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- scripting -------------------------------------------------------------------------

    def fail_next(self, *faults: Fault) -> None:
        """Queue faults; each authenticated request consumes one until the queue is empty."""
        self._faults.extend(faults)

    def queue_texts(self, *texts: str) -> None:
        """Queue transcript texts, handed out in order of arrival to successful requests."""
        self._texts.extend(texts)

    def queue_replies(self, *replies: chat.ChatReply) -> None:
        """Queue chat answers, handed out in order to chat completions that pass validation
        (after any queued fault)."""
        self._replies.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.chat_requests.clear()
        self._replies.clear()
        self._faults.clear()
        self._texts.clear()
        self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.requests),
            "chat_requests": len(self.chat_requests),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": dict(Counter(str(r.status) for r in self.requests)),
            "pending_faults": len(self._faults),
        }

    # -- handlers --------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._check_auth(request)) is not None:
            return denied
        models = sorted(self.models or OPENAI_TRANSCRIPTION_MODELS)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "system"} for m in models]
        return web.json_response({"object": "list", "data": data})

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response(self.stats())

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(
            request_id=f"req_{uuid.uuid4().hex}",
            method=request.method,
            path=request.path,
            content_type=request.headers.get(hdrs.CONTENT_TYPE, ""),
            authorization=request.headers.get(hdrs.AUTHORIZATION),
        )
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._answer(request, record)
            response.headers["x-request-id"] = record.request_id
            record.status = response.status
            return response
        finally:
            self.in_flight -= 1
            record.finished_at = time.monotonic()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        record = chat.ChatRequest(
            request_id=f"req_{uuid.uuid4().hex}",
            authorization=request.headers.get(hdrs.AUTHORIZATION),
        )
        self.chat_requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._chat_answer(request, record)
            response.headers["x-request-id"] = record.request_id
            record.status = response.status
            return response
        finally:
            self.in_flight -= 1
            record.finished_at = time.monotonic()

    async def _chat_answer(
        self, request: web.Request, record: chat.ChatRequest
    ) -> web.StreamResponse:
        raw = await request.read()
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            record.body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            record.body = None
        if self._faults:
            fault = self._faults.popleft()
            if fault.hold is not None:
                await self._held(fault.hold)
            if fault.delay:
                await self._sleep(fault.delay)
            if fault.disconnect:
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=499)
            if fault.status is not None:
                return _fault_response(fault)
        try:
            chat.validate(
                record, models=self.chat_models, structured_outputs=self.structured_outputs
            )
        except chat.ChatRefused as exc:
            return _json_error(exc.status, exc.message, param=exc.param, code=exc.code)
        if self.latency:
            await self._sleep(self.latency)
        reply = self._replies.popleft() if self._replies else None
        if reply is None:
            reply = chat.default_reply(record, self.chat_fn)
        headers = {"openai-processing-ms": str(int(self.latency * 1000))}
        return web.json_response(chat.completion(record, reply), headers=headers)

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        # The body is always consumed before answering, even for errors: replying while the
        # client is still uploading makes it see a reset connection instead of our status.
        if request.content_type != "multipart/form-data":
            await request.read()
            return _json_error(
                400,
                f"Invalid Content-Type header ({request.content_type}), expected"
                " multipart/form-data. (HINT: If you're using curl, you can pass"
                " -H 'Content-Type: multipart/form-data')",
            )
        try:
            audio = await self._read_multipart(request, record)
        except ValueError as exc:
            return _json_error(400, f"Could not parse multipart form: {exc}")

        if (denied := self._check_auth(request)) is not None:
            return denied

        if self._faults:
            fault = self._faults.popleft()
            if fault.hold is not None:
                await self._held(fault.hold)
            if fault.delay:
                await self._sleep(fault.delay)
            if fault.disconnect:
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=499)
            if fault.status is not None:
                return _fault_response(fault)

        if record.file_size > self.max_upload_bytes:
            return _json_error(
                413,
                f"Maximum content size limit ({self.max_upload_bytes}) exceeded"
                f" ({record.file_size} bytes read)",
                type="server_error",
            )
        if (invalid := self._validate(record)) is not None:
            return invalid

        if self.latency:
            await self._sleep(self.latency)
        return self._success(record, audio)

    async def _read_multipart(self, request: web.Request, record: RecordedRequest) -> bytes:
        reader = await request.multipart()
        audio = bytearray()
        digest = hashlib.sha256()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart is not supported")
            name = part.name or ""
            if name == "file" or part.filename is not None:
                record.filename = part.filename
                record.file_content_type = part.headers.get(hdrs.CONTENT_TYPE)
                while chunk := await part.read_chunk(64 * 1024):
                    record.file_size += len(chunk)
                    digest.update(chunk)
                    # Keep counting past the limit (for the 413 message) but stop buffering.
                    if len(audio) <= self.max_upload_bytes:
                        audio += chunk
            else:
                record.fields.setdefault(name, []).append(await part.text())
        if record.filename is not None or record.file_size:
            record.file_sha256 = digest.hexdigest()
        return bytes(audio)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        if not header:
            return _json_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an"
                " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            shown = key.strip()
            masked = f"{shown[:4]}***{shown[-4:]}" if len(shown) > 8 else "***"
            return _json_error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at"
                " https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    def _validate(self, record: RecordedRequest) -> web.Response | None:
        """The request checks OpenAI makes that a buggy client would trip over."""
        model = record.model
        if not model:
            return _json_error(400, "you must provide a model parameter", param="model")
        if self.models is not None and model not in self.models:
            return _json_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        if record.filename is None:
            return _json_error(
                400, "Missing required parameter: 'file'.", param="file", code="missing_required"
            )
        extension = record.filename.rpartition(".")[2].lower() if "." in record.filename else ""
        if extension not in SUPPORTED_EXTENSIONS:
            return _fault_response(Fault.invalid_file())
        if record.file_size == 0:
            return _json_error(
                400,
                "Audio file is too short. Minimum audio length is 0.1 seconds.",
                param="file",
                code="audio_too_short",
            )
        response_format = record.response_format
        if response_format not in RESPONSE_FORMATS:
            return _json_error(
                400,
                f"'{response_format}' is not one of {sorted(RESPONSE_FORMATS)} - 'response_format'",
                param="response_format",
            )
        if model.startswith("gpt-") and response_format not in {"json", "text", "diarized_json"}:
            return _json_error(
                400,
                f"response_format '{response_format}' is not compatible with model '{model}'."
                " Use 'json' or 'text' instead.",
                param="response_format",
                code="unsupported_value",
            )
        if response_format == "diarized_json" and model != DIARIZE_MODEL:
            return _json_error(
                400,
                f"response_format 'diarized_json' is not compatible with model '{model}'.",
                param="response_format",
                code="unsupported_value",
            )
        if model == DIARIZE_MODEL:
            refused = self._validate_diarize(record)
            if refused is not None:
                return refused
        granularities = record.timestamp_granularities
        if granularities and response_format != "verbose_json":
            return _json_error(
                400,
                "timestamp_granularities is only supported with response_format=verbose_json",
                param="timestamp_granularities",
            )
        if any(g not in {"word", "segment"} for g in granularities):
            return _json_error(
                400, "Invalid timestamp_granularities", param="timestamp_granularities"
            )
        return None

    def _validate_diarize(self, record: RecordedRequest) -> web.Response | None:
        if record.prompt is not None:
            return _json_error(
                400, "Prompt is not supported for diarization models.", param="prompt"
            )
        names, references = record.known_speaker_names, record.known_speaker_references
        if len(names) > MAX_KNOWN_SPEAKERS:
            return _json_error(
                400,
                f"At most {MAX_KNOWN_SPEAKERS} known speakers are supported.",
                param="known_speaker_names",
            )
        if len(names) != len(references):
            return _json_error(
                400,
                "known_speaker_names and known_speaker_references must have the same length.",
                param="known_speaker_references",
            )
        strategy = record.chunking_strategy
        if strategy is not None and strategy != "auto" and not strategy.startswith("{"):
            return _json_error(400, "Invalid chunking_strategy", param="chunking_strategy")
        return None

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        text = self._text_for(record, audio)
        duration = self._duration_of(record, audio)
        model = record.model or ""
        headers = {"openai-processing-ms": str(int(self.latency * 1000)), "openai-model": model}
        response_format = record.response_format
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain", headers=headers)
        if response_format in {"srt", "vtt"}:
            body = _subtitles(_segments(text, duration), vtt=response_format == "vtt")
            return web.Response(text=body, content_type="text/plain", headers=headers)
        if (
            record.model == DIARIZE_MODEL
            and record.chunking_strategy is None
            and duration > DIARIZE_UNCHUNKED_SECONDS
        ):
            return _json_error(
                400,
                "chunking_strategy is required for diarization models when the input audio"
                f" is longer than {DIARIZE_UNCHUNKED_SECONDS:.0f} seconds.",
                param="chunking_strategy",
            )
        if response_format == "diarized_json":
            return web.json_response(
                {
                    "task": "transcribe",
                    "duration": duration,
                    "text": text,
                    "segments": self.diarized_segments(text, duration, record),
                    "usage": {"type": "duration", "seconds": math.ceil(duration)},
                },
                headers=headers,
            )
        if response_format == "verbose_json":
            language = record.language or self.language
            payload: dict[str, Any] = {
                "task": "transcribe",
                "language": _LANGUAGE_NAMES.get(language, language),
                "duration": duration,
                "text": text,
                "segments": _segments(text, duration),
                "usage": {"type": "duration", "seconds": math.ceil(duration)},
            }
            if "word" in record.timestamp_granularities:
                payload["words"] = _words(text, duration)
            if record.timestamp_granularities == ["word"]:
                # Asking for words only drops segments, as OpenAI does.
                del payload["segments"]
            return web.json_response(payload, headers=headers)
        usage: dict[str, Any]
        if model.startswith("gpt-"):
            audio_tokens = max(1, int(duration * 10))
            output_tokens = len(text.split())
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + output_tokens,
            }
        else:
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        return web.json_response({"text": text, "usage": usage}, headers=headers)

    def diarized_segments(
        self, text: str, duration: float, record: RecordedRequest
    ) -> list[dict[str, Any]]:
        """diarized_json segments: the text in turns of `words_per_turn` words, the speakers
        alternating A, B (or the known speaker names), as the real model labels them.
        Override for scripted conversations."""
        names = record.known_speaker_names or ["A", "B"]
        return [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{s['id']:03d}",
                "start": s["start"],
                "end": s["end"],
                "text": s["text"],
                "speaker": names[s["id"] % len(names)],
            }
            for s in _segments(text, duration)
        ]

    def _text_for(self, record: RecordedRequest, audio: bytes) -> str:
        if self._texts:
            return self._texts.popleft()
        if self.transcript_fn is not None:
            return self.transcript_fn(record, audio)
        if self.fixed_text is not None:
            return self.fixed_text
        digest = (record.file_sha256 or "")[:8]
        return f"fake transcript of {record.file_size} bytes {digest}"

    def _duration_of(self, record: RecordedRequest, audio: bytes) -> float:
        if self.duration is not None:
            return self.duration
        with contextlib.suppress(wave.Error, EOFError), wave.open(io.BytesIO(audio), "rb") as wav:
            return round(wav.getnframes() / wav.getframerate(), 6)
        # Not a WAV: assume a 128 kbit/s compressed stream.
        return round(record.file_size / 16_000, 6)

    async def _held(self, until: asyncio.Event) -> None:
        """Until the test sets `until`, or the server closes."""
        waits = [asyncio.ensure_future(e.wait()) for e in (until, self._closing)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)


def _json_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    body = openai_error(message, type=type, param=param, code=code)
    return web.json_response(body, status=status)


def _fault_response(fault: Fault) -> web.Response:
    assert fault.status is not None
    if isinstance(fault.body, str):
        return web.Response(
            status=fault.status, text=fault.body, content_type="text/html", headers=fault.headers
        )
    body = dict(fault.body) if fault.body is not None else openai_error("fault", type="fault")
    return web.json_response(body, status=fault.status, headers=dict(fault.headers))


def _segments(text: str, duration: float, words_per_segment: int = 8) -> list[dict[str, Any]]:
    words = text.split()
    if not words:
        return []
    per_word = duration / len(words)
    segments: list[dict[str, Any]] = []
    for index, first in enumerate(range(0, len(words), words_per_segment)):
        chunk = words[first : first + words_per_segment]
        start = round(first * per_word, 2)
        end = round((first + len(chunk)) * per_word, 2)
        segments.append(
            {
                "id": index,
                "seek": int(start // 30) * 3000,
                "start": start,
                "end": end,
                # Whisper's segment texts carry a leading space.
                "text": " " + " ".join(chunk),
                "tokens": [50364 + first + i for i in range(len(chunk))],
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.2,
                "no_speech_prob": 0.01,
            }
        )
    return segments


def _words(text: str, duration: float) -> list[dict[str, Any]]:
    words = text.split()
    if not words:
        return []
    per_word = duration / len(words)
    return [
        {"word": w, "start": round(i * per_word, 2), "end": round((i + 1) * per_word, 2)}
        for i, w in enumerate(words)
    ]


def _subtitles(segments: list[dict[str, Any]], *, vtt: bool) -> str:
    def stamp(seconds: float) -> str:
        millis = round(seconds * 1000)
        hours, millis = divmod(millis, 3_600_000)
        minutes, millis = divmod(millis, 60_000)
        secs, millis = divmod(millis, 1000)
        sep = "." if vtt else ","
        return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"

    blocks = [
        ("" if vtt else f"{s['id'] + 1}\n")
        + f"{stamp(s['start'])} --> {stamp(s['end'])}\n{s['text'].strip()}\n"
        for s in segments
    ]
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(blocks)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeOpenAIServer(
        api_key=args.api_key or None,
        latency=args.latency,
        fixed_text=args.text,
        models=None if args.any_model else OPENAI_TRANSCRIPTION_MODELS,
        structured_outputs=not args.no_structured_outputs,
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        # One machine-readable line so a bench script can wait for readiness and learn the port.
        print(json.dumps({"listening": server.base_url, "api_key": server.api_key}), flush=True)
        await stop.wait()
    print(json.dumps({"stopped": server.stats()}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI transcription server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per transcription")
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help="expected bearer key; empty disables the check"
    )
    parser.add_argument("--text", default=None, help="fixed transcript text for every request")
    parser.add_argument("--any-model", action="store_true", help="accept any model name")
    parser.add_argument(
        "--no-structured-outputs",
        action="store_true",
        help="chat completions: refuse response_format json_schema",
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
