"""Limits on one file's work in the transcriber (issue 24, item 5): what ingest could not refuse
(a container that does not tell its duration, a job from before the limits, a replay) fails
permanently with a clear code before the engine hears any of it; recordings with more channels
than FFmpeg can downmix (9, 32) are transcribed. Real Postgres and SeaweedFS; the fake OpenAI
server, and the offline engine on real speech for the channels."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
import numpy as np
import pytest

from libs.audio.limits import AudioLimits
from libs.blobstore import S3BlobStore
from libs.bus import Reject
from libs.settings import Settings
from services.transcriber.engines import Engines
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.worker import Transcriber
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fixtures.odd_audio import adts_bytes, multichannel_wav, wav_bytes
from tests.integration.transcriber import harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@asynccontextmanager
async def worker(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer, limits: AudioLimits
) -> AsyncIterator[tuple[Transcriber, S3BlobStore]]:
    engine = OpenAIEngine(build_client(fake.api_key, fake.base_url, 30.0))
    try:
        async with S3BlobStore.open(settings.require_s3()) as store:
            engines = Engines(default=engine, offline=harness.offline_engine())
            yield Transcriber(pool, store, engines, audio_limits=limits), store
    finally:
        await engine.aclose()


async def _fails(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: FakeOpenAIServer,
    audio: bytes,
    ext: str,
    limits: AudioLimits,
) -> dict[str, object]:
    async with worker(settings, pool, fake, limits) as (transcriber, store):
        job = await harness.make_job(pool, store, audio, ext=ext)
        with pytest.raises(Reject):
            await transcriber.handle(harness.delivery(job.event))
        return await harness.job_state(pool, job.id)


async def test_a_recording_that_only_decoding_finds_too_long_fails_permanently(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    """Raw AAC (ADTS) has no container duration: the transcriber decodes it, stops at the
    limit, and fails the job once, permanently, without sending it to the engine."""
    state = await _fails(settings, pool, fake, adts_bytes(10.0), "aac", AudioLimits(max_seconds=4))
    assert state["failure"] == "permanent"
    assert state["error_code"] == "audio_too_long"
    assert state["failed_events"] == 1 and state["ready_events"] == 0
    assert fake.requests == []


async def test_the_same_recording_within_the_limit_is_transcribed(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with worker(settings, pool, fake, AudioLimits(max_seconds=60)) as (transcriber, store):
        job = await harness.make_job(pool, store, adts_bytes(10.0), ext="aac")
        await transcriber.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
    assert state["status"] == "completed"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("rate", [1, 100])
async def test_a_wav_labelled_at_an_unreal_rate_fails_permanently(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer, rate: int
) -> None:
    """The attack file (766 KB labelled 1 Hz, planned as 1,859 chunks) reaching the
    transcriber anyway (stored before the limits, or replayed): refused before any work."""
    audio = wav_bytes(np.zeros(383_000, dtype="<i2"), rate=rate)
    state = await _fails(settings, pool, fake, audio, "wav", AudioLimits())
    assert state["failure"] == "permanent"
    assert state["error_code"] == "unsupported_sample_rate"
    assert state["chunks"] == 0
    assert fake.requests == []


@pytest.mark.parametrize("channels", [9, 32])
async def test_recordings_with_many_channels_are_transcribed(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer, channels: int
) -> None:
    """More channels than FFmpeg has a downmix for failed `invalid_media`; averaged, the
    sentence on one of them (faint copies on the rest) is heard by the offline engine."""
    async with worker(settings, pool, fake, AudioLimits()) as (transcriber, store):
        job = await harness.make_job(
            pool, store, multichannel_wav(channels), model="offline", multichannel="auto"
        )
        await transcriber.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        body = msgspec.json.decode(await store.get_bytes(f"camp/transcriptions/json/{stem}.json"))
    assert state["status"] == "completed", state
    words = re.sub(r"[^a-z ]", " ", body["text"].lower()).split()
    assert "campaign" in words and "morning" in words, body["text"]
