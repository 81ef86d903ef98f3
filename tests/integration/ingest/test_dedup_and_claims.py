"""Concurrent duplicates: exactly one job AND one download; crashed submissions leave nothing."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import aiohttp
import pytest

from libs.blobstore import S3BlobStore
from libs.jobs import claims
from libs.settings import Settings
from services.ingest.submit import object_stem
from tests.integration.ingest.conftest import (
    WAV,
    Api,
    Upstream,
    bootstrap_key_id,
    serve_api,
    unique_prefix,
)
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


async def test_concurrent_duplicate_urls_yield_one_job_and_one_download(
    api: Api, upstream: Upstream
) -> None:
    prefix = unique_prefix()
    path = f"/gate/{uuid.uuid4().hex}.wav"
    upstream.gate.clear()
    tasks = [
        asyncio.create_task(api.submit({"url": upstream.url + path, "b2_prefix": prefix}))
        for _ in range(8)
    ]
    # The first download is held open until every submission has arrived at ingest.
    await eventually(lambda: _async(upstream.hits[path] >= 1))
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert {status for status, _, _ in results} == {200}
    assert len({body["audio_file_id"] for _, body, _ in results}) == 1
    assert upstream.hits[path] == 1
    assert len(await api.rows(prefix)) == 1
    assert len(await api.objects(prefix)) == 1


async def test_concurrent_duplicate_idempotency_keys_yield_one_job(api: Api) -> None:
    prefix = unique_prefix()
    key = uuid.uuid4().hex

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("b2_prefix", prefix)
        f.add_field("file", WAV, filename="a.wav")
        return f

    results = await asyncio.gather(
        *(api.submit(form(), headers={"Idempotency-Key": key}) for _ in range(6))
    )
    assert {status for status, _, _ in results} == {200}
    assert len({body["audio_file_id"] for _, body, _ in results}) == 1
    assert len(await api.objects(prefix)) == 1


async def test_a_duplicate_waiting_too_long_gets_409_with_retry_after(
    ingest_settings: Settings, upstream: Upstream
) -> None:
    async with serve_api(ingest_settings, claim_wait=0.5) as api:
        prefix = unique_prefix()
        url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
        sha1 = hashlib.sha1(url.encode()).hexdigest()
        holder = uuid.uuid4()
        # Another replica is storing the same URL right now.
        assert await claims.claim(
            api.pool,
            api_key_id=await bootstrap_key_id(api),
            audio_file_id=holder,
            object_stem=f"{prefix}/x/audio/unknown/{holder}",
            keys=claims.dedup_keys(prefix=prefix, url_sha1=sha1, idempotency_key=None),
            ttl_seconds=600,
        )
        try:
            status, body, headers = await api.submit({"url": url, "b2_prefix": prefix})
        finally:
            await claims.release(api.pool, holder)
        assert status == 409, body
        assert body["error"] == "submission_in_progress"
        assert headers["Retry-After"] == "5"
        assert await api.rows(prefix) == []
        # Once the holder is gone, the same submission goes through.
        status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
        assert status == 200, body


async def test_sweep_deletes_what_a_crashed_submission_left(api: Api) -> None:
    prefix = unique_prefix()
    file_id = uuid.uuid4()
    stem = object_stem(prefix=prefix, campaign="c", phone=None, file_id=file_id)
    key_id = await bootstrap_key_id(api)
    async with S3BlobStore.open(api.settings.require_s3()) as store:
        # A process claimed, stored its object, and died before the job row: the claim expires.
        assert await claims.claim(
            api.pool,
            api_key_id=key_id,
            audio_file_id=file_id,
            object_stem=stem,
            keys=[],
            ttl_seconds=0,
        )
        await store.put_bytes(f"{stem}.wav", WAV, "audio/wav")
        assert await api.objects(prefix) == [f"{stem}.wav"]
        assert await claims.sweep(api.pool, store) >= 1
        assert await api.objects(prefix) == []
        assert (
            await api.pool.fetchval(
                "SELECT count(*) FROM media_pipeline.ingest_claims WHERE audio_file_id = $1",
                file_id,
            )
            == 0
        )


async def test_a_submission_whose_claim_was_swept_is_not_recorded(
    ingest_settings: Settings, upstream: Upstream
) -> None:
    """A download that outlives its claim must not commit a job pointing at a swept object."""
    async with serve_api(ingest_settings, claim_ttl=0.0) as api:
        prefix = unique_prefix()
        path = f"/gate/{uuid.uuid4().hex}.wav"
        upstream.gate.clear()
        task = asyncio.create_task(api.submit({"url": upstream.url + path, "b2_prefix": prefix}))
        try:
            await eventually(lambda: _async(upstream.hits[path] >= 1))
            async with S3BlobStore.open(api.settings.require_s3()) as store:
                await eventually(lambda: claims.sweep(api.pool, store))
        finally:
            upstream.gate.set()
        status, body, headers = await task
        assert status == 503, body
        assert body["error"] == "submission_expired"
        assert "Retry-After" in headers
        assert await api.rows(prefix) == []
        assert await api.objects(prefix) == []


async def _async(value: bool) -> bool:
    return value
