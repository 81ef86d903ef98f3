"""S3BlobStore against real SeaweedFS, and its data plane against misbehaving HTTP servers.

Whole-object PUT/GET go through `DataPlane` (aiohttp + botocore's signer) while HEAD, DELETE
and multipart go through aiobotocore, so every test that crosses the two checks that both
agree on key encoding and signing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web

from libs.blobstore import BlobNotFound, BlobStoreRefused, BlobStoreUnavailable, S3BlobStore
from libs.blobstore.dataplane import MAX_ATTEMPTS
from libs.settings import S3Settings
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration

BUCKET = "blobstore-test"
ODD_KEYS = [
    "plain/key.txt",
    "with space/and+plus/file name.json",
    "unicode/caf\u00e9/\u65e5\u672c.txt",
    "reserved/a=b&c;d,e:f@g$h!i'j(k)l*m~n.txt",
    "percent/100%25 done%.txt",
]


def _settings(s3_server: Any, **overrides: str) -> S3Settings:
    values = {
        "endpoint": s3_server.endpoint,
        "bucket": BUCKET,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
    }
    values.update(overrides)
    return S3Settings(**values)


@pytest.fixture
async def store(s3_server: Any) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(_settings(s3_server)) as opened:
        await opened.ensure_bucket()
        yield opened


@pytest.fixture
async def boto(s3_server: Any) -> AsyncIterator[Any]:
    config = AioConfig(s3={"addressing_style": "path"})
    async with get_session().create_client(
        "s3", config=config, **s3_server.client_kwargs()
    ) as client:
        yield client


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_put_and_get_agree_with_botocore_on_odd_keys(
    store: S3BlobStore, boto: Any, key: str
) -> None:
    key = _prefix() + key
    data = os.urandom(3000)
    stored = await store.put_bytes(key, data, "application/json")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    head = await boto.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/json"
    assert head["ContentLength"] == len(data)
    assert await store.get_bytes(key) == data
    assert await store.exists(key)
    await store.delete(key)
    assert not await store.exists(key)


async def test_get_reads_objects_written_by_botocore(
    store: S3BlobStore, boto: Any, tmp_path: Path
) -> None:
    key = _prefix() + "from botocore/\u00fcber.wav"
    data = os.urandom(2_500_000)
    await boto.put_object(Bucket=BUCKET, Key=key, Body=data)
    target = tmp_path / "audio.wav"
    assert await store.download_to(key, target) == len(data)
    assert target.read_bytes() == data


async def test_objects_come_back_byte_for_byte_whatever_their_content_encoding(
    store: S3BlobStore, boto: Any
) -> None:
    key = _prefix() + "gzipped.json"
    compressed = gzip.compress(b'{"text": "hello"}' * 100)
    await boto.put_object(Bucket=BUCKET, Key=key, Body=compressed, ContentEncoding="gzip")
    assert await store.get_bytes(key) == compressed


async def test_missing_objects_are_not_found(store: S3BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        await store.get_bytes(_prefix() + "nope.txt")
    with pytest.raises(BlobNotFound):
        await store.download_to(_prefix() + "nope.wav", tmp_path / "x.wav")


async def test_large_stream_goes_multipart_and_reads_back(store: S3BlobStore) -> None:
    key = _prefix() + "large.bin"
    blocks = [os.urandom(1024 * 1024) for _ in range(9)]

    async def chunks() -> AsyncIterator[bytes]:
        for block in blocks:
            yield block

    stored = await store.put_stream(key, chunks(), "application/octet-stream")
    whole = b"".join(blocks)
    assert stored.size == len(whole)
    assert stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert hashlib.sha256(await store.get_bytes(key)).hexdigest() == stored.sha256


async def test_small_stream_is_one_put(store: S3BlobStore, boto: Any) -> None:
    key = _prefix() + "small.wav"

    async def chunks() -> AsyncIterator[bytes]:
        yield b"RIFF"
        yield b"\0" * 1000

    stored = await store.put_stream(key, chunks(), "audio/wav")
    assert stored.size == 1004
    head = await boto.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "audio/wav"


async def test_wrong_secret_is_refused_not_unavailable(s3_server: Any) -> None:
    async with S3BlobStore.open(_settings(s3_server, secret_key="wrong")) as bad:
        with pytest.raises(BlobStoreRefused, match="403"):
            await bad.put_bytes(_prefix() + "x.txt", b"x", "text/plain")
        with pytest.raises(BlobStoreRefused, match="403"):
            await bad.get_bytes(_prefix() + "x.txt")


async def test_unreachable_store_is_unavailable(s3_server: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with S3BlobStore.open(_settings(s3_server, endpoint=dead)) as down:
        with pytest.raises(BlobStoreUnavailable, match="put"):
            await down.put_bytes("k.txt", b"x", "text/plain")
        with pytest.raises(BlobStoreUnavailable, match="get"):
            await down.get_bytes("k.txt")
        # An error names the object by its file name only: the key's path names the phone, and
        # error texts go to logs and failure records that outlive a deletion.
        key = "gw/camp/audio/14155550123/0b1c.wav"
        for call in (down.put_bytes(key, b"x", "audio/wav"), down.delete(key)):
            with pytest.raises(BlobStoreUnavailable) as error:
                await call
            assert "0b1c.wav" in str(error.value) and "14155550123" not in str(error.value)


class FlakyS3:
    """A stand-in S3 endpoint that fails the first `failures` requests in a chosen way."""

    def __init__(self, failures: int, how: str, body: bytes = b"") -> None:
        self.failures = failures
        self.how = how
        self.body = body
        self.requests: list[tuple[str, str, bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.read()
        self.requests.append((request.method, request.raw_path, payload))
        if len(self.requests) <= self.failures:
            if self.how == "503":
                return web.Response(status=503, body=b"<Error><Code>SlowDown</Code></Error>")
            # Promise the whole body, send half, hang up: a truncated download.
            resp = web.StreamResponse(headers={"Content-Length": str(len(self.body))})
            await resp.prepare(request)
            await resp.write(self.body[: len(self.body) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(body=self.body if request.method == "GET" else b"")


@pytest.fixture
async def flaky_endpoint() -> AsyncIterator[Any]:
    servers: list[web.AppRunner] = []

    async def start(flaky: FlakyS3) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", flaky.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        servers.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in servers:
        await runner.cleanup()


async def test_throttled_put_is_retried_and_resigned(s3_server: Any, flaky_endpoint: Any) -> None:
    flaky = FlakyS3(failures=MAX_ATTEMPTS - 1, how="503")
    endpoint = await flaky_endpoint(flaky)
    async with S3BlobStore.open(_settings(s3_server, endpoint=endpoint)) as store:
        await store.put_bytes("a b/c.txt", b"payload", "text/plain")
    assert len(flaky.requests) == MAX_ATTEMPTS
    assert all(r == ("PUT", f"/{BUCKET}/a%20b/c.txt", b"payload") for r in flaky.requests)


async def test_persistent_5xx_is_unavailable_after_bounded_attempts(
    s3_server: Any, flaky_endpoint: Any
) -> None:
    flaky = FlakyS3(failures=100, how="503")
    endpoint = await flaky_endpoint(flaky)
    async with S3BlobStore.open(_settings(s3_server, endpoint=endpoint)) as store:
        with pytest.raises(BlobStoreUnavailable, match="SlowDown"):
            await store.put_bytes("k.txt", b"x", "text/plain")
    assert len(flaky.requests) == MAX_ATTEMPTS


async def test_truncated_download_restarts_the_file(
    s3_server: Any, flaky_endpoint: Any, tmp_path: Path
) -> None:
    body = os.urandom(300_000)
    flaky = FlakyS3(failures=1, how="truncate", body=body)
    endpoint = await flaky_endpoint(flaky)
    target = tmp_path / "audio.wav"
    async with S3BlobStore.open(_settings(s3_server, endpoint=endpoint)) as store:
        assert await store.download_to("audio.wav", target) == len(body)
    assert target.read_bytes() == body
    assert len(flaky.requests) == 2


async def test_large_body_is_sent_whole_on_every_attempt(
    s3_server: Any, flaky_endpoint: Any
) -> None:
    # Over ONE_WRITE_BODY the body goes as a file-like object: a retry must not find it read.
    data = os.urandom(3 * 1024 * 1024)
    flaky = FlakyS3(failures=1, how="503")
    endpoint = await flaky_endpoint(flaky)
    async with S3BlobStore.open(_settings(s3_server, endpoint=endpoint)) as store:
        await store.put_bytes("big.wav", data, "audio/wav")
    assert [r[2] == data for r in flaky.requests] == [True, True]


async def test_large_body_round_trips_through_seaweedfs(store: S3BlobStore) -> None:
    key = _prefix() + "big.wav"
    data = os.urandom(3 * 1024 * 1024)
    await store.put_bytes(key, data, "audio/wav")
    assert await store.get_bytes(key) == data
