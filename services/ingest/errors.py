"""The one table that gives errors an HTTP status: domain code raises `libs.errors` classes and
never names a status; the error middleware answers `{error, detail}` from here."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from libs import db
from libs.db import DatabaseUnavailable
from libs.errors import (
    Conflict,
    DomainError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    RateLimited,
    SourceFailed,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedMedia,
)
from services.ingest import bodies

# Class -> status; the first class the error is an instance of wins (subclasses inherit).
STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (TimedOut, 408),
    (Conflict, 409),
    (TooLarge, 413),
    (UnsupportedMedia, 415),
    (IdempotencyKeyReused, 422),
    (SourceFailed, 422),
    (RateLimited, 429),
    (Unavailable, 503),
)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    code: str
    detail: str
    headers: dict[str, str]


def answer(exc: DomainError) -> ErrorAnswer:
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
    headers: dict[str, str] = {}
    detail = exc.detail
    retry_after = exc.retry_after
    if isinstance(exc, Unavailable):
        # Dependency outages: the client gets the class's fixed sentence, the log gets the rest.
        detail = exc.public_detail if exc.dependency != "gateway" else exc.detail
        retry_after = retry_after if retry_after is not None else exc.default_retry_after
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ErrorAnswer(status, exc.code, detail, headers)


def translate_driver_error(exc: BaseException) -> DomainError | None:
    """Last line of defence: a raw Postgres connection error that escaped the database
    boundary is still an outage, never a 500."""
    if isinstance(exc, db.CONNECTION_ERRORS):
        return DatabaseUnavailable(str(exc))
    return None


def json_error(answer: ErrorAnswer, extra_headers: dict[str, str] | None = None) -> web.Response:
    return bodies.answer(
        bodies.ErrorBody(error=answer.code, detail=answer.detail),
        status=answer.status,
        headers={**answer.headers, **(extra_headers or {})},
    )
