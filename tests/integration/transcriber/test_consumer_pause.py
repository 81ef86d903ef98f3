"""Pause on a real JetStream: nothing is fetched until the probe passes, so a credentials
outage does not burn deliveries; a requeued pause acks its message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext

from libs.bus import Delivery, Pause, PullConsumer
from tests.stack_fixtures import eventually, scratch_stream

pytestmark = pytest.mark.integration


@pytest.fixture
async def js_stream(nats_server: Any) -> AsyncIterator[tuple[JetStreamContext, str, str, str]]:
    async with scratch_stream(nats_server.url, ack_wait=5.0) as scratch:
        yield scratch


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
