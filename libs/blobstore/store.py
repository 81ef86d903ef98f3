"""The object-storage interface the services use; S3 and in-memory implementations follow it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from libs.errors import Unavailable


class BlobStoreUnavailable(Unavailable, RuntimeError):
    """The object store cannot be reached or failed server-side; callers answer 503 or retry."""

    code = "storage_unavailable"
    dependency = "s3"
    public_detail = "object storage is unavailable, retry later"


class BlobStoreRefused(Unavailable, RuntimeError):
    """The object store answered with a final 4xx (wrong credentials, missing bucket
    permissions, a bad request): a misconfiguration, not an outage, so not retried here."""

    code = "storage_refused"
    dependency = "s3"
    public_detail = "object storage refused the request (check the gateway's S3 credentials)"
    default_retry_after = 60
    refused = True


class BlobNotFound(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD tells: the object's size in bytes and its stored Content-Type."""

    size: int
    content_type: str | None


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

    async def info(self, key: str) -> ObjectInfo:
        """Size and content type; BlobNotFound when there is no such object."""
        ...

    def read_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes `first`..`last` (inclusive) of the object, in chunks, with one ranged GET:
        memory stays bounded whatever the size."""
        ...
