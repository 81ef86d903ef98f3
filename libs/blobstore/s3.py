"""S3-compatible object storage (Backblaze B2, AWS, MinIO, SeaweedFS).

Whole-object PUTs and GETs, the per-job requests, go through `DataPlane` (aiohttp + our SigV4
signer); everything else through aiobotocore.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiobotocore.session
import aiohttp
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from libs.blobstore.dataplane import DataPlane
from libs.blobstore.store import (
    BlobNotFound,
    BlobStoreRefused,
    BlobStoreUnavailable,
    ObjectInfo,
    StoredObject,
)
from libs.layout import loggable
from libs.settings import S3Settings

log = structlog.get_logger()

# S3 requires parts of at least 5 MiB (except the last); 8 MiB keeps memory small and bounded.
PART_SIZE = 8 * 1024 * 1024
MAX_POOL_CONNECTIONS = 64
# What a ranged read hands on at a time (audio streamed to a player).
RANGE_CHUNK = 64 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _translate(exc: Exception, what: str, key: str = "") -> Exception:
    """The store's error for a botocore one. `key` is kept out of the text: botocore's texts
    quote the request URL, which holds the key and so the phone (errors go to logs and failure
    records); the object is named by its file name, as in `what`."""
    detail = _without_key(str(exc), key)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return BlobNotFound(what)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or status == 0:
            return BlobStoreUnavailable(f"{what}: {code or detail}")
        return BlobStoreRefused(f"{what}: object store refused: {code} {detail}")
    return BlobStoreUnavailable(f"{what}: {detail}")


def _without_key(text: str, key: str) -> str:
    for form in (key, quote(key, safe="/")) if key else ():
        text = text.replace(form, loggable(key))
    return text


class S3BlobStore:
    def __init__(self, client: Any, data: DataPlane, settings: S3Settings) -> None:
        self._client = client
        self._data = data
        self.bucket = settings.bucket

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: S3Settings) -> AsyncIterator[S3BlobStore]:
        session = aiobotocore.session.get_session()
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # Path-style works on every S3-compatible server; virtual hosts need DNS we may lack.
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # botocore's default of 10 connections would queue the requests of an ingest
            # process accepting dozens of submissions at once behind each other.
            max_pool_connections=MAX_POOL_CONNECTIONS,
        )
        async with (
            session.create_client(
                "s3",
                endpoint_url=settings.endpoint,
                region_name=settings.region,
                aws_access_key_id=settings.access_key,
                aws_secret_access_key=settings.secret_key,
                config=config,
            ) as client,
            DataPlane.open(settings, connections=MAX_POOL_CONNECTIONS) as data,
        ):
            yield cls(client, data, settings)

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in _NOT_FOUND:
                raise _translate(exc, f"bucket {self.bucket}") from exc
        except (BotoCoreError, OSError) as exc:
            raise _translate(exc, f"bucket {self.bucket}") from exc
        try:
            await self._client.create_bucket(Bucket=self.bucket)
            log.info("bucket_created", bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translate(exc, f"create bucket {self.bucket}") from exc

    async def ping(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _translate(exc, f"bucket {self.bucket}") from exc

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        sha256 = hashlib.sha256(data).hexdigest()
        await self._data.put(key, data, content_type, sha256)
        return StoredObject(key=key, size=len(data), sha256=sha256)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> StoredObject:
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type
                        )
                        upload_id = str(created["UploadId"])
                    part = bytes(buffer[:PART_SIZE])
                    del buffer[:PART_SIZE]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                # Small object: one PUT, no multipart bookkeeping; the running digest is
                # already the whole body's.
                await self._data.put(key, bytes(buffer), content_type, digest.hexdigest())
            else:
                if buffer:
                    parts.append(
                        await self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer))
                    )
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException as exc:
            if upload_id is not None:
                await self._abort(key, upload_id)
            if isinstance(exc, ClientError | BotoCoreError | OSError):
                raise _translate(exc, f"put {loggable(key)}", key) from exc
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes
    ) -> dict[str, Any]:
        resp = await self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"ETag": resp["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            # The bucket's lifecycle rule for incomplete uploads is the backstop.
            log.warning("multipart_abort_failed", object=loggable(key), error=str(exc))

    async def download_to(self, key: str, path: Path) -> int:
        with path.open("wb") as fh:

            def restart() -> None:
                fh.seek(0)
                fh.truncate()

            return await self._data.get(key, fh.write, restart)

    async def get_bytes(self, key: str) -> bytes:
        buffer = bytearray()
        await self._data.get(key, buffer.extend, buffer.clear)
        return bytes(buffer)

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _translate(exc, f"delete {loggable(key)}", key) from exc

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            translated = _translate(exc, f"head {loggable(key)}", key)
            if isinstance(translated, BlobNotFound):
                return False
            raise translated from exc
        except (BotoCoreError, OSError) as exc:
            raise _translate(exc, f"head {loggable(key)}", key) from exc
        return True

    def url_for(self, key: str) -> str:
        return self._data.url_for(key)

    async def info(self, key: str) -> ObjectInfo:
        try:
            resp = await self._client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _translate(exc, f"head {loggable(key)}", key) from exc
        return ObjectInfo(size=int(resp["ContentLength"]), content_type=resp.get("ContentType"))

    async def read_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """One GET with `Range: bytes=first-last`, its body read RANGE_CHUNK at a time."""
        what = f"get {loggable(key)}"
        try:
            resp = await self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={first}-{last}"
            )
            body = resp["Body"]
            try:
                while chunk := await body.read(RANGE_CHUNK):
                    yield chunk
            finally:
                body.close()
        except (ClientError, BotoCoreError, OSError, aiohttp.ClientError) as exc:
            raise _translate(exc, what, key) from exc
