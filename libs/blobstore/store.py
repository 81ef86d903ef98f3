"""The object-storage interface the services use; S3 and in-memory implementations follow it."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class BlobStoreUnavailable(RuntimeError):
    """The object store cannot be reached or failed server-side; callers answer 503 or retry."""


class BlobStoreRefused(RuntimeError):
    """The object store answered with a final 4xx (wrong credentials, missing bucket
    permissions, a bad request): a misconfiguration, not an outage, so not retried here."""


class BlobNotFound(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class BlobStore(Protocol):
    bucket: str

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> StoredObject:
        """Store a stream in constant memory; if `chunks` raises, nothing is left behind."""
        ...

    async def download_to(self, key: str, path: Path) -> int: ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def ping(self) -> None: ...

    def url_for(self, key: str) -> str: ...
