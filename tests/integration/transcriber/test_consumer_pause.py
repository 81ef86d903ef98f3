"""Pause on a real JetStream: nothing is fetched until the probe passes, so a credentials
outage does not burn deliveries; a requeued pause acks its message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from libs.bus import Delivery, Pause, PullConsumer, ensure_consumer, ensure_stream
from libs.contracts.streams import ConsumerSpec, StreamSpec
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def js_stream(nats_server: Any) -> AsyncIterator[tuple[JetStreamContext, str, str, str]]:
    tag = uuid.uuid4().hex[:8]
    stream, subject, durable = f"P_{tag}", f"pause.{tag}", f"pauser_{tag}"
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(
        js, StreamSpec(name=stream, subjects=(f"{subject}.>",), max_age_seconds=600)
    )
    await ensure_consumer(
        js,
        stream,
        ConsumerSpec(
            durable=durable,
            filter_subjects=(f"{subject}.>",),
            ack_wait_seconds=5.0,
            max_deliver=3,
            max_ack_pending=100,
            description="test",
        ),
    )
    yield js, stream, subject, durable
    await js.delete_stream(stream)
    await nc.close()


async def test_nothing_is_fetched_until_the_probe_passes(
    js_stream: tuple[JetStreamContext, str, str, str],
) -> None:
    js, stream, subject, durable = js_stream
    log: list[str] = []
    probes = 0

    async def probe() -> bool:
        nonlocal probes
        probes += 1
        log.append(f"probe{probes}")
        return probes >= 3

    async def handler(d: Delivery) -> None:
        log.append(f"{d.data.decode()}{d.num_delivered}")
        if d.data == b"a" and d.num_delivered == 1:
            raise Pause("key rejected", seconds=0.2, probe=probe)

    await js.publish(f"{subject}.x", b"a")
    await js.publish(f"{subject}.x", b"b")
    consumer = PullConsumer(js, stream=stream, durable=durable, handler=handler, concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def settled() -> bool:
        info = await js.consumer_info(stream, durable)
        return "a2" in log and "b1" in log and info.num_ack_pending == 0

    try:
        await eventually(settled, timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # Three pauses of 0.2 s, two failed probes: no message was handed out in between, so "a"
    # was delivered twice in all (3 would have been its last), "b" once.
    assert log[:4] == ["a1", "probe1", "probe2", "probe3"], log
    assert sorted(log[4:]) == ["a2", "b1"]


async def test_a_requeued_pause_acks_its_message(
    js_stream: tuple[JetStreamContext, str, str, str],
) -> None:
    js, stream, subject, durable = js_stream
    seen: list[int] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.num_delivered)
        raise Pause("key rejected on the last delivery", seconds=0.1, requeued=True)

    await js.publish(f"{subject}.x", b"c")
    consumer = PullConsumer(js, stream=stream, durable=durable, handler=handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def acked() -> bool:
        info = await js.consumer_info(stream, durable)
        return bool(seen) and info.num_ack_pending == 0 and info.num_pending == 0

    try:
        await eventually(acked, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert seen == [1]
