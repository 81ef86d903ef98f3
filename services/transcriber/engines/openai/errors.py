"""OpenAI SDK failures translated into the engine error types the consumer acts on.

Retries belong to the JetStream consumer, so every SDK exception becomes an `EngineError`
subclass saying whether to nak (transient, with a delay when the server named one), term
(permanent) or pause (auth).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

import aiohttp
import openai

from services.transcriber.engines.base import (
    EngineAuthError,
    EngineError,
    PermanentEngineError,
    TransientEngineError,
)

_DETAIL_LIMIT = 500

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
