"""Object PUTs and GETs over aiohttp, signed with SigV4.

These are the requests made per job (one PUT per submission in ingest; one GET and four PUTs
per transcription). Through aiobotocore each costs ~1.3 ms of client CPU in event hooks,
endpoint rulesets, user-agent rebuilding and response parsing; here ~0.3 ms, signing included,
and 2.6x the PUTs/s at 16 concurrent (bench/s3_bench.py, bench/results/s3_requests.json).
Buckets, multipart uploads, HEAD and DELETE stay on aiobotocore, where per-request cost does
not matter.

Retries follow botocore's "standard" mode in spirit: connection errors, timeouts, 5xx and
throttling are retried (3 attempts, jittered exponential backoff), everything else is final.
"""

from __future__ import annotations

import asyncio
import io
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from libs.blobstore.sigv4 import EMPTY_SHA256, SigV4Signer
from libs.blobstore.store import BlobNotFound, BlobStoreRefused, BlobStoreUnavailable
from libs.layout import loggable
from libs.settings import S3Settings

MAX_ATTEMPTS = 3
BACKOFF_BASE = 0.1
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
READ_CHUNK = 1024 * 1024
# aiohttp sends bodies up to this size in one write and warns above it (a long write blocks
# the loop); larger ones go as a file-like object it writes in chunks.
ONE_WRITE_BODY = 1024 * 1024
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_NOT_FOUND_STATUS = 404
# S3 error bodies are small XML documents; only the code is needed.
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class _Retryable(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DataPlane:
    def __init__(self, session: aiohttp.ClientSession, settings: S3Settings) -> None:
        self._session = session
        self._prefix = f"{settings.endpoint.rstrip('/')}/{quote(settings.bucket, safe='')}/"
        self._signer = SigV4Signer(settings.access_key, settings.secret_key, settings.region)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: S3Settings, *, connections: int) -> AsyncIterator[DataPlane]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            ),
            # Objects come back byte for byte, whatever Content-Encoding they were stored with.
            auto_decompress=False,
        ) as session:
            yield cls(session, settings)

    def url_for(self, key: str) -> str:
        return self._prefix + quote(key, safe="/~")

    async def put(self, key: str, data: bytes, content_type: str, sha256: str) -> None:
        """PUT `data`, whose hex SHA-256 the caller has already computed (the signature
        covers it, and the store verifies the body against it)."""

        async def send(resp: aiohttp.ClientResponse) -> None:
            await resp.read()

        await self._request(
            "PUT", key, send, data=data, headers={"Content-Type": content_type}, sha256=sha256
        )

    async def get(self, key: str, sink: Callable[[bytes], Any], restart: Callable[[], Any]) -> int:
        """Stream the object into `sink`; `restart` is called before a retried attempt."""
        size = 0

        async def receive(resp: aiohttp.ClientResponse) -> None:
            nonlocal size
            size = 0
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                sink(chunk)
                size += len(chunk)

        await self._request("GET", key, receive, restart=restart)
        return size

    async def _request(
        self,
        method: str,
        key: str,
        on_success: Callable[[aiohttp.ClientResponse], Any],
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        restart: Callable[[], Any] | None = None,
        sha256: str = EMPTY_SHA256,
    ) -> None:
        what = f"{method.lower()} {loggable(key)}"  # errors never name the phone
        url = self.url_for(key)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self._attempt(method, url, what, on_success, data, headers or {}, sha256)
                return
            except _Retryable as exc:
                if attempt == MAX_ATTEMPTS:
                    raise BlobStoreUnavailable(f"{what}: {exc.detail}") from exc
            # Jittered exponential backoff, as botocore's standard retry mode.
            await asyncio.sleep(random.uniform(0, BACKOFF_BASE * 2**attempt))  # noqa: S311
            if restart is not None:
                restart()

    async def _attempt(
        self,
        method: str,
        url: str,
        what: str,
        on_success: Callable[[aiohttp.ClientResponse], Any],
        data: bytes | None,
        headers: dict[str, str],
        payload_sha256: str,
    ) -> None:
        # Signed per attempt: the signature covers the request time.
        signed = self._signer.sign(method, url, headers, payload_sha256)
        try:
            async with self._session.request(
                method,
                # Already percent-encoded exactly as signed: yarl must not re-encode it.
                URL(url, encoded=True),
                data=io.BytesIO(data) if data is not None and len(data) > ONE_WRITE_BODY else data,
                headers=signed,
            ) as resp:
                if resp.status < 300:
                    await on_success(resp)
                    return
                body = await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        match = _ERROR_CODE.search(body)
        code = match.group(1).decode(errors="replace") if match else str(resp.status)
        if resp.status == _NOT_FOUND_STATUS:
            raise BlobNotFound(what)
        if resp.status in _RETRYABLE_STATUS or resp.status >= 500:
            raise _Retryable(f"{resp.status} {code}")
        raise BlobStoreRefused(f"{what}: object store refused: {resp.status} {code}")
