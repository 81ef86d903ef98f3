"""PullConsumer against a real JetStream: ack, nak(delay), term, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from libs.bus import Delivery, PullConsumer, Reject, Retry
from tests.stack_fixtures import eventually, scratch_stream

pytestmark = pytest.mark.integration


@pytest.fixture
async def js_stream(nats_server: Any) -> AsyncIterator[tuple[JetStreamContext, str, str, str]]:
    async with scratch_stream(nats_server.url, ack_wait=1.0) as scratch:
        yield scratch


async def _run(consumer: PullConsumer, until: Any, timeout: float = 20) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(until, timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_outcomes_map_to_ack_nak_term(
    js_stream: tuple[JetStreamContext, str, str, str],
) -> None:
    js, stream, subject, durable = js_stream
    seen: Counter[str] = Counter()

    async def handler(d: Delivery) -> None:
        kind = d.data.decode()
        seen[kind] += 1
        if kind == "retry-once" and d.num_delivered == 1:
            raise Retry("transient", delay=0.05)
        if kind == "reject":
            raise Reject("poison")
        if kind == "crash":
            raise ValueError("unexpected")

    for kind in ("ok", "retry-once", "reject"):
        await js.publish(f"{subject}.x", kind.encode())
    consumer = PullConsumer(js, stream=stream, durable=durable, handler=handler)

    async def settled() -> bool:
        info = await js.consumer_info(stream, durable)
        return info.num_ack_pending == 0 and info.num_pending == 0 and seen["retry-once"] == 2

    await _run(consumer, settled)
    assert seen == Counter({"ok": 1, "retry-once": 2, "reject": 1})


async def test_heartbeats_keep_a_long_job_from_being_redelivered(
    js_stream: tuple[JetStreamContext, str, str, str],
) -> None:
    js, stream, subject, durable = js_stream
    deliveries: list[int] = []
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        deliveries.append(d.num_delivered)
        # Three AckWaits long: without in_progress() JetStream would hand it to someone else.
        await asyncio.sleep(3.0)
        done.set()

    await js.publish(f"{subject}.long", b"long")
    # Two consumers on one durable, as two worker processes would be.
    a = PullConsumer(js, stream=stream, durable=durable, handler=handler)
    b = PullConsumer(js, stream=stream, durable=durable, handler=handler)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]

    async def acked() -> bool:
        info = await js.consumer_info(stream, durable)
        return done.is_set() and info.num_ack_pending == 0

    try:
        await eventually(acked, timeout=15)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert deliveries == [1]


# The offline engine's test: an AckWait long enough that a loaded 2-core machine cannot starve
# the event loop past it (CI once saw a redelivery at 1 s), short enough that decoding ~40 s of
# speech (about 10 s here) lasts several of them.
ENGINE_ACK_WAIT = 3.0


async def test_heartbeats_continue_while_the_offline_engine_computes(
    nats_server: Any, tmp_path: Path
) -> None:
    # The same, with the real offline engine decoding ~40 s of speech (several AckWaits of
    # CPU): CTranslate2 runs on a thread without the GIL, so in_progress() keeps going out.
    async with scratch_stream(nats_server.url, ack_wait=ENGINE_ACK_WAIT) as js_stream:
        await _offline_engine_job(js_stream, tmp_path)


async def _offline_engine_job(
    js_stream: tuple[JetStreamContext, str, str, str], tmp_path: Path
) -> None:
    from services.transcriber.engines import EngineOptions
    from tests.integration.transcriber.harness import offline_engine
    from tests.integration.transcriber.test_long_audio import long_recording

    audio, _ = long_recording(40 / 60, seed=3)
    path = tmp_path / "long.wav"
    path.write_bytes(audio)
    engine = offline_engine()
    await engine.warm_up()
    js, stream, subject, durable = js_stream
    deliveries: list[int] = []
    took: list[float] = []

    async def handler(d: Delivery) -> None:
        deliveries.append(d.num_delivered)
        started = time.perf_counter()
        await engine.transcribe(path, EngineOptions())
        took.append(time.perf_counter() - started)

    await js.publish(f"{subject}.offline", b"offline")
    a = PullConsumer(js, stream=stream, durable=durable, handler=handler)
    b = PullConsumer(js, stream=stream, durable=durable, handler=handler)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]

    async def acked() -> bool:
        info = await js.consumer_info(stream, durable)
        return bool(took) and info.num_ack_pending == 0

    try:
        await eventually(acked, timeout=300)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert deliveries == [1]
    # Longer than the AckWait, or this proved nothing.
    assert took[0] > ENGINE_ACK_WAIT, took


async def test_shutdown_hands_in_flight_work_back(
    js_stream: tuple[JetStreamContext, str, str, str],
) -> None:
    js, stream, subject, durable = js_stream
    started = asyncio.Event()
    attempts: list[int] = []

    async def stuck(d: Delivery) -> None:
        attempts.append(d.num_delivered)
        started.set()
        await asyncio.Event().wait()

    await js.publish(f"{subject}.stuck", b"x")
    consumer = PullConsumer(js, stream=stream, durable=durable, handler=stuck, shutdown_grace=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)

    # The nak(0) on shutdown makes it available again at once, long before AckWait (30 s).
    got: list[int] = []

    async def quick(d: Delivery) -> None:
        got.append(d.num_delivered)

    second = PullConsumer(js, stream=stream, durable=durable, handler=quick)
    await second.run_until_idle()
    assert attempts == [1], attempts
    assert got == [2]
