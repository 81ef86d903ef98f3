"""Adapting the SSRF-guarded HTTP client to what submission needs; its errors become domain errors (4xx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from libs import errors
from libs.safehttp import (
    Allowlist,
    BlockedUrl,
    SafeHttpClient,
    TooLarge,
    UpstreamError,
    parse_allowlist,
    validate_url,
)
from libs.settings import Settings


def _blocked(exc: BlockedUrl, what: str) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"{what.replace('_', ' ')} refused: {exc.message}", code=f"{what}_{exc.code}"
    )


class SafeAudioFetcher:
    def __init__(self, client: SafeHttpClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    @classmethod
    @asynccontextmanager
    async def open_client(cls, settings: Settings) -> AsyncIterator[SafeAudioFetcher]:
        # Many submissions may fetch from one recording server at once (a dialler's storage).
        async with SafeHttpClient(
            parse_allowlist(settings.ssrf_allowlist),
            max_connections=256,
            max_connections_per_host=64,
        ) as client:
            yield cls(client, settings)

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            async with self._client.stream(
                url,
                max_bytes=self._settings.max_upload_bytes,
                connect_timeout=self._settings.download_connect_timeout,
                read_timeout=self._settings.download_read_timeout,
                total_timeout=self._settings.download_total_timeout,
            ) as resp:
                yield resp.iter_chunks()
        except BlockedUrl as exc:
            raise _blocked(exc, "url") from exc
        except TooLarge as exc:
            raise errors.TooLarge(
                f"the recording exceeds the limit of {self._settings.max_upload_bytes} bytes"
            ) from exc
        except UpstreamError as exc:
            status = f" (HTTP {exc.status})" if exc.status else ""
            raise errors.SourceFailed(
                f"could not download the recording{status}: {exc.message}",
                code=f"download_{exc.code}",
            ) from exc


class CallbackCheck:
    """Cheap submit-time check of a callback URL; the notifier re-checks at delivery time."""

    def __init__(self, allowlist: Allowlist) -> None:
        self._allowlist = allowlist

    def __call__(self, url: str) -> None:
        try:
            validate_url(url, self._allowlist)
        except BlockedUrl as exc:
            raise _blocked(exc, "callback_url") from exc


def callback_validator(settings: Settings) -> CallbackCheck:
    return CallbackCheck(parse_allowlist(settings.ssrf_allowlist))
