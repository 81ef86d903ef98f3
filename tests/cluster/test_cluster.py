"""Three nats-server processes on loopback form a JetStream cluster; the stream has 3 replicas.
The node leading the stream is SIGKILLed in the middle of a run of jobs: no job is lost, every
job is transcribed once and its webhook delivered, and new submissions keep being processed
(nats-py reconnects to the surviving nodes from the comma-separated NATS_URL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import pytest

from libs.contracts import streams
from libs.provision import provision
from libs.settings import Settings
from tests.cluster.launcher import NatsCluster
from tests.stack_fixtures import API_KEY, WebhookInbox, create_database, eventually, free_port

pytestmark = pytest.mark.integration

BEFORE_KILL = 4
AFTER_KILL = 4


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    c = NatsCluster(tmp_path / "nats")
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def cluster_settings(
    cluster: NatsCluster, settings: Settings, postgres_server: Any
) -> Settings:
    dsn = await create_database(postgres_server, "gw_cluster")
    s = replace(
        settings,
        database_url=dsn,
        nats_url=cluster.url,
        stream_replicas=3,
        ingest_port=free_port(),
        # Jobs in flight on the killed node come back after AckWait: keep the test short.
        transcriber_ack_wait=10.0,
    )
    await provision(s)
    return s


async def _submit(base: str, samples_url: str) -> str:
    data = {"url": f"{samples_url}/{uuid.uuid4().hex}/hello_campaign.wav", "b2_prefix": "cluster"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/api/media/transcribe", data=data, headers={"X-API-Key": API_KEY}) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return str(body["audio_file_id"])


async def test_killing_the_stream_leader_loses_no_job(
    cluster: NatsCluster,
    cluster_settings: Settings,
    samples_url: str,
    webhook_inbox: WebhookInbox,
) -> None:
    from services.ingest import main as ingest_main
    from services.notifier import main as notifier_main
    from services.transcriber import main as transcriber_main

    settings = cluster_settings
    nc = await nats.connect(settings.nats_servers)
    js = nc.jetstream()
    info = await js.stream_info(streams.STREAM_NAME)
    assert info.config.num_replicas == 3
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(ingest_main.run(settings, stop)),
        asyncio.create_task(transcriber_main.run(settings, stop)),
        asyncio.create_task(notifier_main.run(settings, stop)),
    ]
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"
    pool = await asyncpg.connect(settings.require_database_url())
    try:

        async def ready() -> bool:
            for t in tasks:
                if t.done():
                    t.result()
            try:
                async with aiohttp.ClientSession() as s, s.get(base + "/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout=60)
        jobs = [await _submit(base, samples_url) for _ in range(BEFORE_KILL)]

        async def completed() -> int:
            return int(
                await pool.fetchval(
                    "SELECT count(*) FROM media_pipeline.audio_files "
                    "WHERE status = 'completed' AND id = ANY($1::uuid[])",
                    jobs,
                )
            )

        await eventually(lambda: _at_least(completed, 1), timeout=60)
        leader = info.cluster.leader
        assert leader is not None
        killed_at = time.monotonic()
        cluster.node(leader).kill()

        # Submissions keep working; everything in flight and everything new completes.
        jobs += [await _submit(base, samples_url) for _ in range(AFTER_KILL)]
        await eventually(lambda: _at_least(completed, len(jobs)), timeout=90)
        recovery = time.monotonic() - killed_at

        rows = await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.transcriptions WHERE audio_file_id = ANY($1::uuid[])",
            jobs,
        )
        assert rows == len(jobs)
        for job in jobs:
            await webhook_inbox.wait_for(job, timeout=60)
        after = await js.stream_info(streams.STREAM_NAME)
        assert after.cluster is not None and after.cluster.leader != leader
        print(
            f"cluster: {len(jobs)} jobs, all completed {recovery:.1f}s after the leader was killed"
        )
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        await pool.close()
        await nc.close()


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)
