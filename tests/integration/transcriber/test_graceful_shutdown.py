"""Stopping a transcriber (SIGTERM's path) stops fetching and lets in-flight jobs finish."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import nats
import pytest

from embedded.nats import NatsServer
from libs.blobstore import S3BlobStore
from libs.bus import ensure_stream
from libs.contracts import encode, streams, subjects
from libs.settings import Settings
from services.transcriber import main as transcriber_main
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.transcriber import harness
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration

SPEECH = (Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav").read_bytes()


async def test_stop_lets_in_flight_jobs_finish_and_fetches_no_more(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    scope = f"stop-{uuid.uuid4().hex[:8]}"
    async with (
        NatsServer(tmp_path / "nats") as own_nats,
        FakeOpenAIServer(latency=3.0, fixed_text="finished") as fake,
    ):
        nc = await nats.connect(own_nats.url)
        js = nc.jetstream()
        await ensure_stream(js, streams.stream_spec())
        async with S3BlobStore.open(settings.require_s3()) as store:
            jobs = [await harness.make_job(pool, store, SPEECH, tenant=scope) for _ in range(5)]
        for job in jobs:
            await js.publish(subjects.audio_stored(scope), encode(job.event))
        worker_settings = replace(
            settings,
            nats_url=own_nats.url,
            engine="openai",
            openai_api_key=fake.api_key,
            openai_base_url=fake.base_url,
            transcriber_concurrency=3,
            transcriber_scope=(scope,),
            transcriber_shutdown_grace=20.0,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(transcriber_main.run(worker_settings, stop, scope=scope))

        async def three_in_flight() -> bool:
            if task.done():
                task.result()
            return fake.in_flight >= 3

        await eventually(three_in_flight, timeout=30)
        stop.set()
        await asyncio.wait_for(task, 30)
        states = [await harness.job_state(pool, j.id) for j in jobs]
        info = await js.consumer_info(streams.STREAM_NAME, f"transcriber-{scope}")
        await nc.close()
    # The three in flight finished (not handed back); the other two were never fetched.
    assert sorted(s["status"] for s in states) == ["completed"] * 3 + ["queued"] * 2
    assert len(fake.requests) == 3
    assert info.num_ack_pending == 0 and info.num_pending == 2
