"""Running the dead-letter capture as a service, with the operational gauges on /metrics.

`transcribe up` runs it beside the other services; a deployment runs one (or more: the durable
consumer shares the work and rows are unique per advisory) with `transcribe deadletters run`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import structlog

from libs import bus, db
from libs.contracts import streams
from libs.observability import OpsCollector, serve_metrics
from libs.settings import Settings
from services.deadletters.capture import DeadLetterCapture

log = structlog.get_logger()

OBSERVED_STREAMS = (streams.STREAM_NAME, streams.DEADLETTER_STREAM_NAME)


async def run(settings: Settings, stop: asyncio.Event, *, collect_interval: float = 10.0) -> None:
    async with AsyncExitStack() as stack:
        pool = await db.create_pool(settings.require_database_url(), max_size=4)
        stack.push_async_callback(pool.close)
        nc = await bus.connect(settings.nats_servers, name="deadletters")
        stack.push_async_callback(nc.drain)
        js = nc.jetstream()
        await bus.ensure_stream(
            js,
            streams.deadletter_stream_spec(settings.stream_max_age_days, settings.stream_replicas),
        )
        spec = streams.deadletter_consumer()
        await bus.ensure_consumer(js, streams.DEADLETTER_STREAM_NAME, spec)
        if settings.metrics_port:
            port = await stack.enter_async_context(
                serve_metrics(settings.metrics_host, settings.metrics_port)
            )
            log.info("metrics_listening", port=port)
        capture = DeadLetterCapture(pool, js)
        consumer = bus.PullConsumer(
            js,
            stream=streams.DEADLETTER_STREAM_NAME,
            durable=spec.durable,
            handler=capture.handle,
            concurrency=4,
            name="deadletters",
        )
        collector = OpsCollector(pool, js, OBSERVED_STREAMS, interval=collect_interval)
        log.info("deadletters_started")
        await asyncio.gather(consumer.run(stop), collector.run(stop))
