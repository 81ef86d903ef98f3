"""The operational gauges: refreshed from Postgres and JetStream, served on /metrics."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import aiohttp
import asyncpg
import pytest
from nats.js import JetStreamContext

from libs.contracts import streams
from libs.observability import OpsCollector, collect_snapshot, serve_metrics
from libs.settings import Settings
from tests.integration.ops.conftest import DeadLetterService
from tests.stack_fixtures import RunningStack, eventually, free_port

pytestmark = pytest.mark.integration


async def test_snapshot_matches_the_database_and_the_consumers(
    running_stack: RunningStack, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    snap = await collect_snapshot(pool, js, (streams.STREAM_NAME,))
    rows = {r["status"]: r["n"] for r in await pool.fetch(
        "SELECT status, count(*) AS n FROM media_pipeline.audio_files GROUP BY status"
    )}  # fmt: skip
    # Background work may move a job between states in between; none appears or vanishes.
    assert sum(snap.jobs.values()) == sum(rows.values())
    assert set(snap.jobs) <= {"queued", "processing", "completed", "failed"}
    names = {v.consumer for v in snap.consumers}
    assert {streams.TRANSCRIBER_DURABLE, streams.NOTIFIER_DURABLE} <= names
    info = await js.consumer_info(streams.STREAM_NAME, streams.TRANSCRIBER_DURABLE)
    (view,) = [v for v in snap.consumers if v.consumer == streams.TRANSCRIBER_DURABLE]
    assert view.ack_floor_stream_seq <= info.ack_floor.stream_seq
    assert snap.stream_last_seq[streams.STREAM_NAME] >= view.ack_floor_stream_seq
    assert snap.outbox_lag_seconds >= 0


async def test_gauges_on_the_ingest_metrics_endpoint(
    running_stack: RunningStack, deadletter_service: DeadLetterService
) -> None:
    """In `transcribe up` every service shares one process, so ingest's /metrics has it all."""

    async def scraped() -> str | None:
        async with (
            aiohttp.ClientSession() as s,
            s.get(running_stack.base_url + "/metrics") as r,
        ):
            text = await r.text()
        return text if 'transcribe_consumer_pending{consumer="transcriber"' in text else None

    text = await eventually(scraped, timeout=30)
    for metric in (
        r'transcribe_jobs\{state="completed"\} \d',
        r'transcribe_consumer_redelivered\{consumer="notifier",stream="TRANSCRIBE"\} \d',
        r'transcribe_consumer_ack_floor_stream_seq\{consumer="transcriber",stream="TRANSCRIBE"\}',
        r"transcribe_outbox_lag_seconds \d",
        r"transcribe_outbox_unpublished \d",
        r"transcribe_dead_letters_open \d",
    ):
        assert re.search(metric, text), metric


async def test_standalone_metrics_server(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    collector = OpsCollector(pool, js, (streams.STREAM_NAME,), interval=60)
    assert await collector.refresh() is not None
    async with serve_metrics("127.0.0.1", 0) as port, aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            assert "transcribe_stream_last_seq" in await r.text()
        async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200


async def test_a_standalone_notifier_serves_its_own_metrics(settings: Settings) -> None:
    from services.notifier import main as notifier_main

    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(notifier_main.run(replace(settings, metrics_port=port), stop))
    try:

        async def scraped() -> str | None:
            assert not task.done(), task
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{port}/metrics") as r,
                ):
                    return await r.text()
            except aiohttp.ClientError:
                return None

        text = await eventually(scraped, timeout=30)
        assert "transcribe_webhook_seconds" in text
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
