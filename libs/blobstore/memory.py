"""An honest in-memory BlobStore for unit tests: same contract, including atomic put_stream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from libs.blobstore.store import BlobNotFound, BlobStoreUnavailable, ObjectInfo, StoredObject

RANGE_CHUNK = 64 * 1024


class MemoryBlobStore:
    def __init__(self, bucket: str = "test") -> None:
        self.bucket = bucket
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise BlobStoreUnavailable("memory store switched off")

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        self._check()
        self.objects[key] = (bytes(data), content_type)
        return StoredObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> StoredObject:
        self._check()
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
        return await self.put_bytes(key, bytes(buf), content_type)

    async def download_to(self, key: str, path: Path) -> int:
        data = await self.get_bytes(key)
        path.write_bytes(data)
        return len(data)

    async def get_bytes(self, key: str) -> bytes:
        self._check()
        try:
            return self.objects[key][0]
        except KeyError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)

    async def exists(self, key: str) -> bool:
        self._check()
        return key in self.objects

    async def ping(self) -> None:
        self._check()

    def url_for(self, key: str) -> str:
        return f"memory://{self.bucket}/{key}"

    async def info(self, key: str) -> ObjectInfo:
        self._check()
        try:
            data, content_type = self.objects[key]
        except KeyError:
            raise BlobNotFound(key) from None
        return ObjectInfo(size=len(data), content_type=content_type)

    async def read_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        data = await self.get_bytes(key)
        for at in range(first, last + 1, RANGE_CHUNK):
            yield data[at : min(at + RANGE_CHUNK, last + 1)]
