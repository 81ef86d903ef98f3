"""Running services/insights: the `insights` durable consumer of TranscriptReady plus the outbox
relay for its InsightsReady events.

`transcribe up` runs it beside the other services; a deployment runs one or more with
`transcribe insights run` (the durable consumer shares the work; every write is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import structlog

from libs import bus, db
from libs.blobstore import S3BlobStore
from libs.contracts import streams
from libs.llm.insights import InsightsModel, chat_insights
from libs.observability import serve_metrics
from libs.outbox import OutboxRelay
from libs.outbox.relay import PublishFailed
from libs.settings import Settings
from services.insights.worker import InsightsWorker

log = structlog.get_logger()

# Handlers per request in flight at the model: the others read, evaluate and write meanwhile,
# so the model is kept at INSIGHTS_CONCURRENCY (bench/insights_service_bench.py).
PREFETCH = 2

# "Use the configured model" (chat_insights(settings)), as opposed to an injected one or None.
CONFIGURED = "configured"


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    model: InsightsModel | str | None = CONFIGURED,
) -> None:
    """Run until `stop` is set. `model`: the chat model (tests inject one); by default the one
    INSIGHTS_MODEL configures, or none."""
    slots = settings.insights_concurrency
    async with AsyncExitStack() as stack:
        pool = await db.create_pool(settings.require_database_url(), max_size=max(4, slots))
        stack.push_async_callback(pool.close)
        nc = await bus.connect(settings.nats_servers, name="insights")
        stack.push_async_callback(nc.drain)
        objects = await stack.enter_async_context(S3BlobStore.open(settings.require_s3()))
        if settings.metrics_port:  # a standalone service has no API to serve /metrics
            await stack.enter_async_context(
                serve_metrics(settings.metrics_host, settings.metrics_port)
            )
        chat: InsightsModel | None
        if isinstance(model, str):
            configured = chat_insights(settings)
            if configured is not None:
                stack.push_async_callback(configured.aclose)
            chat = configured
        else:
            chat = model
        js = nc.jetstream()
        spec = streams.insights_consumer()
        await bus.ensure_consumer(js, streams.STREAM_NAME, spec)
        worker = InsightsWorker(
            pool,
            objects,
            model=chat,
            model_slots=slots,
            redaction_timeout=settings.redaction_timeout,
        )
        consumer = bus.PullConsumer(
            js,
            stream=streams.STREAM_NAME,
            durable=spec.durable,
            handler=worker.handle,
            concurrency=slots * PREFETCH,
            name="insights",
        )
        relay = OutboxRelay(pool, js)
        log.info("insights_started", model_configured=chat is not None, concurrency=slots)
        # As in the transcriber: the relay outlives the consumer's drain, so what finished
        # during a graceful shutdown is announced by this process.
        relay_stop = asyncio.Event()
        relay_task = asyncio.create_task(relay.run(relay_stop))
        try:
            await consumer.run(stop)
        finally:
            relay_stop.set()
            await relay_task
            with contextlib.suppress(db.DatabaseUnavailable, PublishFailed):
                await relay.run_until_idle()
