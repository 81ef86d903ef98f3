"""Typed failures of the outbound HTTP guard.

Every error carries a short machine ``code`` (stable, safe to put in an API
response) and a human ``message``. Messages never contain resolved IP
addresses of hostnames: echoing them back would let a caller map our internal
DNS view one probe at a time. The addresses are logged instead.
"""

from __future__ import annotations


class SafeHttpError(Exception):
    """Base of everything this package raises on purpose."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BlockedUrl(SafeHttpError, ValueError):
    """The URL, or a redirect hop of it, may not be fetched.

    Codes: ``malformed_url``, ``scheme_not_allowed``, ``credentials_in_url``,
    ``missing_host``, ``non_canonical_ip``, ``private_address``,
    ``unresolvable_host``. A ValueError because it is a property of the input,
    not of the network: retrying the same URL cannot succeed.
    """


class TooLarge(SafeHttpError):
    """The body is, or announces itself as, larger than the caller's limit."""

    limit: int
    observed: int

    def __init__(self, *, limit: int, observed: int, declared: bool) -> None:
        if declared:
            message = f"response declares {observed} bytes; the limit is {limit}"
        else:
            message = f"response body exceeds the limit of {limit} bytes"
        super().__init__("too_large", message)
        self.limit = limit
        self.observed = observed


class UpstreamError(SafeHttpError):
    """The destination was allowed but did not give us a usable answer.

    Codes: ``bad_status`` (``status`` is set), ``too_many_redirects``,
    ``connect_failed``, ``connect_timeout``, ``read_timeout``, ``timeout``
    (overall deadline), ``protocol_error`` (malformed or truncated response).
    ``retryable`` tells a caller whether the same request may work later.
    """

    status: int | None
    retryable: bool

    def __init__(
        self, code: str, message: str, *, status: int | None = None, retryable: bool
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.retryable = retryable
