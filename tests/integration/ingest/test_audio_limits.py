"""Limits on the work one file can cause, at submit (issue 24, item 5): a recording whose own
header says it is longer than MAX_AUDIO_SECONDS (413 `audio_too_long`) or sampled at a rate no
telephone or studio uses (415 `unsupported_sample_rate`) is refused before anything is stored:
no object, no row, no event, no claim left behind. Uploads and downloads alike, through the
real ingest app on the session's Postgres, SeaweedFS and nats-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from embedded import demo as demo_servers
from libs.settings import Settings
from tests.fixtures.odd_audio import FIXTURES, open_ended_wav, tone, wav_bytes
from tests.integration.ingest.conftest import Api, serve_api, unique_prefix

pytestmark = pytest.mark.integration

# The attack file: 766 KB of samples whose header says 1 Hz (106 hours once resampled).
ONE_HERTZ = wav_bytes(np.zeros(383_000, dtype="<i2"), rate=1)
HUNDRED_HERTZ = wav_bytes(np.zeros(383_000, dtype="<i2"), rate=100)
LIMIT = 5.0
TEN_SECONDS = wav_bytes(tone(10.0, 8_000), rate=8_000)
THREE_SECONDS = wav_bytes(tone(3.0, 8_000), rate=8_000)


class Source:
    """Serves `bodies[name]`; names starting with `stream-` go chunked, without a length."""

    def __init__(self) -> None:
        self.url = ""
        self.bodies: dict[str, bytes] = {}

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            body = self.bodies[name]
            if not name.startswith("stream-"):
                return web.Response(body=body, content_type="application/octet-stream")
            resp = web.StreamResponse()
            await resp.prepare(request)
            for at in range(0, len(body), 16_384):
                await resp.write(body[at : at + 16_384])
            return resp

        app = web.Application()
        app.router.add_get("/{name}", handler)
        return app

    def add(self, body: bytes, *, stream: bool = False) -> str:
        name = f"{'stream-' if stream else ''}{uuid.uuid4().hex}"
        self.bodies[name] = body
        return f"{self.url}/{name}"


@pytest.fixture(scope="module")
async def source() -> AsyncIterator[Source]:
    src = Source()
    async with demo_servers.serve(src.app()) as url:
        src.url = url
        yield src


@pytest.fixture(scope="module")
async def limited(ingest_settings: Settings, source: Source) -> AsyncIterator[Api]:
    """The ingest app with MAX_AUDIO_SECONDS=5 and the test's source server allowed."""
    host = source.url.split("://", 1)[1]
    settings = replace(
        ingest_settings,
        max_audio_seconds=LIMIT,
        ssrf_allowlist=f"{ingest_settings.ssrf_allowlist},{host}",
    )
    async with serve_api(settings) as served:
        yield served


def upload(prefix: str, body: bytes, name: str = "call.wav") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    form.add_field("file", body, filename=name, content_type="application/octet-stream")
    return form


async def assert_nothing_written(api: Api, prefix: str) -> None:
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []
    events = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.outbox WHERE subject LIKE $1", f"%.{prefix}"
    )
    assert events == 0
    claims = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.ingest_claims WHERE object_stem LIKE $1",
        f"{prefix}/%",
    )
    assert claims == 0


@pytest.mark.parametrize(("body", "rate"), [(ONE_HERTZ, 1), (HUNDRED_HERTZ, 100)])
async def test_an_upload_labelled_at_an_unreal_rate_is_415(
    api: Api, body: bytes, rate: int
) -> None:
    prefix = unique_prefix()
    status, answer, _ = await api.submit(upload(prefix, body))
    assert status == 415, answer
    assert answer["error"] == "unsupported_sample_rate"
    assert f"{rate} Hz" in answer["detail"]
    await assert_nothing_written(api, prefix)


async def test_a_download_labelled_one_hertz_is_415(limited: Api, source: Source) -> None:
    prefix = unique_prefix()
    status, answer, _ = await limited.submit({"url": source.add(ONE_HERTZ), "b2_prefix": prefix})
    assert status == 415, answer
    assert answer["error"] == "unsupported_sample_rate"
    await assert_nothing_written(limited, prefix)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("call.wav", TEN_SECONDS),
        # The fixture sentence is 6.4 s: FLAC's STREAMINFO, Ogg's last granule tell it.
        ("call.flac", (FIXTURES / "hello_campaign.flac").read_bytes()),
        ("call.ogg", (FIXTURES / "hello_campaign.ogg").read_bytes()),
        ("call.opus", (FIXTURES / "hello_campaign.opus").read_bytes()),
    ],
)
async def test_an_upload_longer_than_the_limit_is_413(limited: Api, name: str, body: bytes) -> None:
    prefix = unique_prefix()
    status, answer, _ = await limited.submit(upload(prefix, body, name))
    assert status == 413, answer
    assert answer["error"] == "audio_too_long"
    assert "MAX_AUDIO_SECONDS" in answer["detail"]
    await assert_nothing_written(limited, prefix)


async def test_a_download_longer_than_the_limit_is_413(limited: Api, source: Source) -> None:
    prefix = unique_prefix()
    status, answer, _ = await limited.submit({"url": source.add(TEN_SECONDS), "b2_prefix": prefix})
    assert status == 413, answer
    assert answer["error"] == "audio_too_long"
    await assert_nothing_written(limited, prefix)


async def test_a_streamed_wav_without_a_data_size_is_cut_off_at_the_limit(
    limited: Api, source: Source
) -> None:
    """Its header cannot tell the length, so its bytes are counted as they pass to storage;
    what was written before the limit is deleted again."""
    prefix = unique_prefix()
    body = open_ended_wav(tone(60.0, 8_000), rate=8_000)
    status, answer, _ = await limited.submit(
        {"url": source.add(body, stream=True), "b2_prefix": prefix}
    )
    assert status == 413, answer
    assert answer["error"] == "audio_too_long"
    await assert_nothing_written(limited, prefix)
    # The same stream within the limit is stored whole.
    short = open_ended_wav(tone(3.0, 8_000), rate=8_000)
    status, answer, _ = await limited.submit(
        {"url": source.add(short, stream=True), "b2_prefix": prefix}
    )
    assert status == 200, answer
    assert len(await limited.objects(prefix)) == 1


async def test_within_the_limit_is_accepted(limited: Api, source: Source) -> None:
    prefix = unique_prefix()
    status, answer, _ = await limited.submit(upload(prefix, THREE_SECONDS))
    assert status == 200, answer
    status, answer, _ = await limited.submit(
        {"url": source.add(THREE_SECONDS), "b2_prefix": prefix}
    )
    assert status == 200, answer
    assert len(await limited.rows(prefix)) == 2


@pytest.mark.parametrize("channels", [9, 32])
async def test_many_channels_are_accepted(api: Api, channels: int) -> None:
    # A second of tone on every channel (the transcriber's tests transcribe speech on them).
    body = wav_bytes(
        np.repeat(tone(1.0, 8_000)[:, None], channels, axis=1), rate=8_000, channels=channels
    )
    prefix = unique_prefix()
    status, answer, _ = await api.submit(upload(prefix, body))
    assert status == 200, answer
