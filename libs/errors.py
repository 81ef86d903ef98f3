"""The domain's errors: what went wrong, with a stable machine-readable code.

Domain code raises these and never names a transport status. The HTTP layer maps each CLASS to a
status in one table (`services/ingest/errors.py`); the CLI maps them to exit codes and messages.
A subclass may carry a more specific `code` (`invalid_model`, `recording_not_found`, ...), given
per raise or as a class attribute; the code is part of the API and must not change.

Dependency outages (`Unavailable` and its subclasses) are raised by the adapters at the edge of
each dependency (libs.db for Postgres, libs.blobstore for S3, libs.bus for NATS), each
translating its driver's exceptions once (`raise X from exc`).
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base of every error the gateway reports to a client or an operator."""

    code: ClassVar[str] = "error"

    def __init__(
        self, detail: str = "", *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail or self.__class__.__doc__ or self.code
        if code is not None:
            self.code = code  # type: ignore[misc]
        # Seconds after which the same request may succeed (rate limits, work in progress).
        self.retry_after = retry_after


class InvalidInput(DomainError):
    """The request is malformed or a value is out of its allowed set."""

    code = "bad_request"


class Unauthenticated(DomainError):
    """No credentials, or credentials that are not valid."""

    code = "unauthenticated"


class Forbidden(DomainError):
    """Valid credentials that may not do this (e.g. another tenant's prefix)."""

    code = "forbidden"


class NotFound(DomainError):
    """The thing asked for does not exist, or is not the caller's to see."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state (work in progress, ambiguity, ...)."""

    code = "conflict"


class TooLarge(DomainError):
    """A body, file or download is over its size limit."""

    code = "too_large"


class UnsupportedMedia(DomainError):
    """The content is not something the gateway accepts (not audio, wrong content type)."""

    code = "unsupported_media"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key already used for a different request (another source, prefix or
    options): the key names one request, so this one is refused rather than answered with the
    other request's job."""

    code = "idempotency_key_reused"


class SourceFailed(DomainError):
    """The client's source (a recording URL) could not be used: download failed, empty body."""

    code = "download_failed"


class RateLimited(DomainError):
    """Over the caller's request budget; `retry_after` says when to come back."""

    code = "rate_limited"


class Unavailable(DomainError):
    """The gateway cannot do this right now through no fault of the request; retry later."""

    code = "unavailable"
    # Which dependency is down (for logs and metrics) and what a client is told.
    dependency: ClassVar[str] = "gateway"
    public_detail: ClassVar[str] = "the gateway is unavailable, retry later"
    default_retry_after: ClassVar[int] = 5
    # A misconfiguration rather than an outage: nothing a client can fix, logged as an error.
    refused: ClassVar[bool] = False


class TimedOut(DomainError):
    """The client did not send its request in time (a body trickling in, or stalled)."""

    code = "request_timeout"
