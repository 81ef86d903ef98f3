"""Running the transcriber as a service: durable consumer plus the outbox relay for its results."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import structlog

from libs import bus, db
from libs.audio.limits import AudioLimits
from libs.blobstore import S3BlobStore
from libs.contracts import streams
from libs.observability import serve_metrics
from libs.outbox import OutboxRelay
from libs.outbox.relay import PublishFailed
from libs.settings import Settings
from services.transcriber.engines import Engine, Engines
from services.transcriber.worker import Transcriber

log = structlog.get_logger()


async def build_engines(settings: Settings, stack: AsyncExitStack) -> Engines:
    from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig

    offline = FasterWhisperEngine(WhisperConfig.from_settings(settings))
    # Verify the pinned model hashes and load it now: a broken or tampered install fails at
    # start, not on the first job.
    await offline.warm_up()
    default: Engine = offline
    if settings.engine == "openai":
        from services.transcriber.engines.openai.engine import OpenAIEngine

        engine = OpenAIEngine.from_settings(
            settings.openai_api_key,
            settings.openai_base_url,
            settings.openai_timeout,
            default_model=settings.openai_model,
        )
        stack.push_async_callback(engine.aclose)
        default = engine
    return Engines(default=default, offline=offline)


# OpenAI jobs spend their time waiting on the network. Offline jobs spend it computing: the
# engine decodes OFFLINE_JOBS requests at once whatever the consumer fetches, and a job waiting
# for the engine still heartbeats. The consumer takes one job more than the engine runs, so
# the next job's download and the last one's uploads and commits overlap the engine's work
# instead of leaving it idle between jobs (bench/offline_gateway.py).
OPENAI_CONCURRENCY = 64
OFFLINE_PREFETCH = 1


def concurrency(settings: Settings) -> int:
    if settings.transcriber_concurrency > 0:
        return settings.transcriber_concurrency
    if settings.engine == "openai":
        return OPENAI_CONCURRENCY
    return settings.offline_jobs + OFFLINE_PREFETCH


def check_scope(settings: Settings, scope: str | None) -> None:
    """A dedicated pool beside a default pool needs the default pool to leave its tenant alone,
    which it does only for tenants listed in TRANSCRIBER_SCOPE. Alone (as the reference worker
    ran with --b2-prefix gateway/) it needs nothing, hence a warning, not a refusal."""
    if scope is None:
        return
    wanted = scope.strip().strip("/")
    if wanted not in settings.transcriber_scope:
        log.warning(
            "scope_not_in_transcriber_scope",
            scope=wanted,
            hint="if a default transcriber pool also runs, list this prefix in TRANSCRIBER_SCOPE"
            " for every transcriber, or both pools will transcribe these jobs",
        )


async def run(settings: Settings, stop: asyncio.Event, *, scope: str | None = None) -> None:
    check_scope(settings, scope)
    slots = concurrency(settings)
    async with AsyncExitStack() as stack:
        # Jobs hold a connection only for short statements; a third of the slots is plenty.
        pool = await db.create_pool(
            settings.require_database_url(), max_size=max(4, min(slots // 3 + 2, 30))
        )
        stack.push_async_callback(pool.close)
        nc = await bus.connect(settings.nats_servers, name="transcriber")
        stack.push_async_callback(nc.drain)
        store = await stack.enter_async_context(S3BlobStore.open(settings.require_s3()))
        if settings.metrics_port:  # a standalone worker has no API to serve /metrics
            await stack.enter_async_context(
                serve_metrics(settings.metrics_host, settings.metrics_port)
            )
        engines = await build_engines(settings, stack)
        js = nc.jetstream()
        spec = streams.transcriber_consumer(scope, ack_wait=settings.transcriber_ack_wait)
        await bus.ensure_consumer(js, streams.STREAM_NAME, spec)
        transcriber = Transcriber(
            pool,
            store,
            engines,
            skip_tenants=settings.transcriber_scope if scope is None else (),
            redaction_timeout=settings.redaction_timeout,
            audio_limits=AudioLimits(max_seconds=settings.max_audio_seconds),
        )
        consumer = bus.PullConsumer(
            js,
            stream=streams.STREAM_NAME,
            durable=spec.durable,
            handler=transcriber.handle,
            concurrency=slots,
            shutdown_grace=settings.transcriber_shutdown_grace,
            name="transcriber",
        )
        relay = OutboxRelay(pool, js)
        log.info(
            "transcriber_started",
            engine=engines.default.name,
            scope=scope,
            concurrency=slots,
            skips=settings.transcriber_scope if scope is None else (),
        )
        # The relay outlives the consumer's drain, so jobs finished during a graceful shutdown
        # are announced by this process rather than left for another relay.
        relay_stop = asyncio.Event()
        relay_task = asyncio.create_task(relay.run(relay_stop))
        try:
            await consumer.run(stop)
        finally:
            relay_stop.set()
            await relay_task
            with contextlib.suppress(db.DatabaseUnavailable, PublishFailed):
                await relay.run_until_idle()
