"""Running the transcriber as a service: durable consumer plus the outbox relay for its results."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import structlog

from libs import bus, db
from libs.blobstore import S3BlobStore
from libs.contracts import streams
from libs.outbox import OutboxRelay
from libs.settings import Settings
from services.transcriber.engines import Engine, Engines
from services.transcriber.worker import Transcriber

log = structlog.get_logger()


async def build_engines(settings: Settings, stack: AsyncExitStack) -> Engines:
    from services.transcriber.engines.offline import PocketsphinxEngine

    offline = PocketsphinxEngine()
    # Load the model now: a broken install fails at start, not on the first job.
    await offline.warm_up()
    default: Engine = offline
    if settings.engine == "openai":
        from services.transcriber.engines.openai_engine import OpenAIEngine

        engine = OpenAIEngine.from_settings(
            settings.openai_api_key,
            settings.openai_base_url,
            settings.openai_timeout,
            default_model=settings.openai_model,
        )
        stack.push_async_callback(engine.aclose)
        default = engine
    return Engines(default=default, offline=offline)


async def run(settings: Settings, stop: asyncio.Event, *, scope: str | None = None) -> None:
    async with AsyncExitStack() as stack:
        pool = await db.create_pool(
            settings.require_database_url(), max_size=max(4, settings.transcriber_concurrency + 2)
        )
        stack.push_async_callback(pool.close)
        nc = await bus.connect(settings.nats_servers, name="transcriber")
        stack.push_async_callback(nc.drain)
        store = await stack.enter_async_context(S3BlobStore.open(settings.require_s3()))
        engines = await build_engines(settings, stack)
        js = nc.jetstream()
        spec = streams.transcriber_consumer(scope)
        await bus.ensure_consumer(js, streams.STREAM_NAME, spec)
        transcriber = Transcriber(pool, store, engines)
        consumer = bus.PullConsumer(
            js,
            stream=streams.STREAM_NAME,
            durable=spec.durable,
            handler=transcriber.handle,
            concurrency=settings.transcriber_concurrency,
            name="transcriber",
        )
        relay = OutboxRelay(pool, js)
        log.info("transcriber_started", engine=engines.default.name, scope=scope)
        await asyncio.gather(consumer.run(stop), relay.run(stop))
