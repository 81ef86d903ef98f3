"""Outbound HTTP to user-supplied URLs: audio downloads and webhook POSTs.

One ``SafeHttpClient`` owns one ``ClientSession`` whose connector resolves and
connects only through ``GuardedResolver``. On top of that every request URL,
including each redirect hop (redirects are followed by hand), goes through
``validate_url`` first, because aiohttp skips the resolver for IP literals.

aiohttp's own errors never leave this module: they are translated into
BlockedUrl / TooLarge / UpstreamError right where they are caught.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import aiohttp
import structlog
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from libs.safehttp.errors import BlockedUrl, SafeHttpError, TooLarge, UpstreamError
from libs.safehttp.policy import Allowlist, CheckedUrl, validate_url
from libs.safehttp.resolver import GuardedResolver, PolicyRefusal

log = structlog.get_logger(__name__)

DEFAULT_USER_AGENT: Final = "transcription-gateway/0.1"
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})
# Lookups that definitively say "no such name"; anything else (EAI_AGAIN,
# SERVFAIL, a dead resolver) may work on a later attempt.
_NXDOMAIN_ERRNOS: Final = frozenset(
    {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
)


def _status_is_retryable(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUSES


def _translate(exc: BaseException) -> SafeHttpError:
    """Map an aiohttp / asyncio failure onto our error types (order matters)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, PolicyRefusal):
            return cause.blocked
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            if isinstance(cause, socket.gaierror) and cause.errno in _NXDOMAIN_ERRNOS:
                return BlockedUrl("unresolvable_host", f"host {exc.host} does not resolve")
            return UpstreamError(
                "dns_failed", f"DNS lookup for {exc.host} failed: {cause}", retryable=True
            )
        return UpstreamError(
            "connect_failed",
            f"cannot connect to {exc.host}:{exc.port}: {cause.strerror or cause}",
            retryable=True,
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError("connect_timeout", "timed out connecting", retryable=True)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return UpstreamError("read_timeout", "timed out waiting for data", retryable=True)
    if isinstance(exc, TimeoutError):
        return UpstreamError("timeout", "overall deadline exceeded", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return BlockedUrl("malformed_url", f"URL rejected by HTTP client: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("protocol_error", f"response body broken: {exc}", retryable=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamError("protocol_error", "server closed the connection", retryable=True)
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError(
            "protocol_error", f"invalid HTTP response: {exc.message}", retryable=False
        )
    return UpstreamError("connect_failed", f"request failed: {exc}", retryable=True)


def _check_final(resp: aiohttp.ClientResponse, max_bytes: int) -> None:
    """Refuse a final response that is not 2xx, or whose Content-Length is over ``max_bytes``."""
    if not 200 <= resp.status < 300:
        raise UpstreamError(
            "bad_status",
            f"server answered HTTP {resp.status}",
            status=resp.status,
            retryable=_status_is_retryable(resp.status),
        )
    declared = _content_length(resp.headers)
    if declared is not None and declared > max_bytes:
        raise TooLarge(limit=max_bytes, observed=declared, declared=True)


def _content_length(headers: CIMultiDictProxy[str]) -> int | None:
    raw = headers.get(hdrs.CONTENT_LENGTH)
    if raw is None or not raw.isascii() or not raw.isdigit():
        # aiohttp's parser already refuses malformed framing; a value we still
        # cannot read is treated as absent and the streamed count decides.
        return None
    return int(raw)


class SafeResponse:
    """A 2xx response whose body can be streamed once, within ``max_bytes``."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        *,
        redirects: tuple[str, ...],
        max_bytes: int,
        deadline: float | None,
    ) -> None:
        self._resp = resp
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._received = 0
        self._started = False
        self._eof = False
        self.url: str = str(resp.url)
        self.status: int = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.redirects: tuple[str, ...] = redirects
        # The length of the bytes iter_chunks will yield. When a server
        # compressed anyway, aiohttp decodes and the header no longer says that.
        encoding = resp.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        self.content_length: int | None = (
            _content_length(resp.headers) if encoding == "identity" else None
        )
        # aiohttp reports application/octet-stream when the header is absent;
        # callers sniffing audio formats want to know it was absent.
        self.content_type: str | None = (
            resp.content_type if hdrs.CONTENT_TYPE in resp.headers else None
        )

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def complete(self) -> bool:
        """The whole body has been read (the connection may be reused)."""
        return self._eof

    async def iter_chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield body chunks; raises TooLarge once the total passes ``max_bytes``."""
        if self._started:
            raise RuntimeError("response body can only be iterated once")
        self._started = True
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await self._resp.content.read(chunk_size)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _translate(exc) from exc
            if not chunk:
                self._eof = True
                return
            self._received += len(chunk)
            if self._received > self._max_bytes:
                raise TooLarge(limit=self._max_bytes, observed=self._received, declared=False)
            yield chunk

    async def read(self) -> bytes:
        """The whole body (at most ``max_bytes``) in memory."""
        buf = bytearray()
        async for chunk in self.iter_chunks():
            buf += chunk
        return bytes(buf)


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a webhook receiver answered. ``body`` is cut at the caller's limit."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    truncated: bool
    latency_s: float


class SafeHttpClient:
    """Outbound HTTP client that can only reach public (or allowlisted) hosts.

    Construct inside a running event loop and ``await close()`` when done (or
    use it as ``async with``), e.g. from an aiohttp ``cleanup_ctx``. ``resolver``
    replaces the DNS lookup underneath the guard (tests use it to fake hostile
    answers); the guard itself cannot be replaced.
    """

    def __init__(
        self,
        allowlist: Allowlist = frozenset(),
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        max_connections: int = 100,
        max_connections_per_host: int = 8,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allowlist = allowlist
        self._guard = GuardedResolver(allowlist, inner=resolver)
        connector = aiohttp.TCPConnector(
            resolver=self._guard,
            socket_factory=self._guard.make_socket,
            limit=max_connections,
            limit_per_host=max_connections_per_host,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Cookies set by one user's server must never ride along on
            # another user's request to the same host.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Proxy environment variables would route around the guard.
            trust_env=False,
            headers={hdrs.USER_AGENT: user_agent},
            # Per-request timeouts are always passed; this only makes the
            # absence of one a bug that cannot hang forever.
            timeout=aiohttp.ClientTimeout(total=300),
        )

    @property
    def allowlist(self) -> Allowlist:
        return self._allowlist

    def validate(self, url: str) -> CheckedUrl:
        """``validate_url`` with this client's allowlist (no DNS)."""
        return validate_url(url, self._allowlist)

    async def close(self) -> None:
        await self._session.close()
        await self._guard.close()

    async def __aenter__(self) -> SafeHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        target: CheckedUrl,
        *,
        client_timeout: aiohttp.ClientTimeout,
        deadline: float | None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> aiohttp.ClientResponse:
        try:
            async with asyncio.timeout_at(deadline):
                return await self._session.request(
                    method,
                    target.url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=client_timeout,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        max_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        max_redirects: int = 5,
        total_timeout: float | None = None,
    ) -> AsyncIterator[SafeResponse]:
        """GET ``url`` following up to ``max_redirects`` redirects, each re-checked.

        ``connect_timeout`` bounds pool wait + DNS + TCP + TLS of each hop,
        ``read_timeout`` each wait for data, ``total_timeout`` (optional) the
        whole exchange including the body - without it a server trickling
        one byte per ``read_timeout`` could hold a download for a very long
        time. Raises BlockedUrl, TooLarge (by Content-Length, before reading)
        or UpstreamError; the yielded response's chunks may raise TooLarge or
        UpstreamError as well.
        """
        loop = asyncio.get_running_loop()
        deadline = None if total_timeout is None else loop.time() + total_timeout
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        # Ask for the bytes as stored; aiohttp still decodes (with bounded
        # buffers) if a server compresses anyway, and we count decoded bytes.
        headers = {str(hdrs.ACCEPT_ENCODING): "identity"}

        resp, redirects = await self._follow_redirects(
            validate_url(url, self._allowlist),
            client_timeout=timeout,
            deadline=deadline,
            headers=headers,
            max_redirects=max_redirects,
        )
        response: SafeResponse | None = None
        try:
            _check_final(resp, max_bytes)
            response = SafeResponse(
                resp, redirects=tuple(redirects), max_bytes=max_bytes, deadline=deadline
            )
            yield response
        finally:
            if response is not None and response.complete:
                resp.release()
            else:
                resp.close()

    async def _follow_redirects(
        self,
        target: CheckedUrl,
        *,
        client_timeout: aiohttp.ClientTimeout,
        deadline: float | None,
        headers: Mapping[str, str],
        max_redirects: int,
    ) -> tuple[aiohttp.ClientResponse, list[str]]:
        """GET ``target``, re-checking and following each redirect; the final response and the
        URLs it went through."""
        redirects: list[str] = []
        while True:
            resp = await self._send(
                "GET", target, client_timeout=client_timeout, deadline=deadline, headers=headers
            )
            location = resp.headers.get(hdrs.LOCATION)
            if resp.status not in _REDIRECT_STATUSES or location is None:
                return resp, redirects
            # A redirect body is never wanted; closing beats draining an
            # unknown amount of it just to reuse the connection.
            resp.close()
            if len(redirects) >= max_redirects:
                raise UpstreamError(
                    "too_many_redirects",
                    f"more than {max_redirects} redirects",
                    retryable=False,
                )
            target = self._redirect_target(target, location)
            redirects.append(str(target.url))
            log.debug(
                "safehttp.redirect",
                status=resp.status,
                hop=len(redirects),
                host=target.host,
                port=target.port,
            )

    def _redirect_target(self, current: CheckedUrl, location: str) -> CheckedUrl:
        try:
            joined = current.url.join(URL(location))
        except ValueError as exc:
            raise BlockedUrl("malformed_url", "redirect Location is not a valid URL") from exc
        try:
            return validate_url(joined, self._allowlist)
        except BlockedUrl as exc:
            raise BlockedUrl(exc.code, f"redirect refused: {exc.message}") from exc

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        # Not left to an outer asyncio.timeout: the budget also sets the
        # socket-level timeouts and its expiry must surface as UpstreamError.
        timeout: float,
        max_response_bytes: int = 16 * 1024,
    ) -> PostResult:
        """POST ``body`` once; a 3xx is returned as the answer, never followed.

        ``timeout`` bounds the whole exchange including reading up to
        ``max_response_bytes`` of the answer; ``latency_s`` measures the same
        span. Raises BlockedUrl (permanent) or UpstreamError (see retryable).
        """
        target = validate_url(url, self._allowlist)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = loop.time() + timeout
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        resp = await self._send(
            "POST",
            target,
            client_timeout=client_timeout,
            deadline=deadline,
            headers=headers,
            data=body,
        )
        try:
            buf = bytearray()
            async with asyncio.timeout_at(deadline):
                while len(buf) < max_response_bytes:
                    chunk = await resp.content.read(max_response_bytes - len(buf))
                    if not chunk:
                        break
                    buf += chunk
                # One byte more tells "exactly at the limit" from "cut short".
                truncated = len(buf) >= max_response_bytes and bool(await resp.content.read(1))
        except (aiohttp.ClientError, TimeoutError) as exc:
            resp.close()
            raise _translate(exc) from exc
        if truncated:
            resp.close()
        else:
            resp.release()
        return PostResult(
            url=str(target.url),
            status=resp.status,
            headers=resp.headers,
            body=bytes(buf),
            truncated=truncated,
            latency_s=time.monotonic() - started,
        )
