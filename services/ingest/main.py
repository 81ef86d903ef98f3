"""Running the ingest API as a service: HTTP server plus the outbox relay for its events."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from libs import bus, db
from libs.blobstore import S3BlobStore
from libs.jobs import claims
from libs.outbox import OutboxRelay
from libs.settings import Settings
from services.ingest.app import create_app, make_runner

log = structlog.get_logger()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    pool = await db.create_pool(settings.require_database_url(), max_size=20)
    nc = await bus.connect(settings.nats_servers, name="ingest")
    try:
        async with S3BlobStore.open(settings.require_s3()) as store:
            app = create_app(settings, pool=pool, store=store, nc=nc)
            runner = make_runner(app, settings)
            await runner.setup()
            site = web.TCPSite(runner, settings.ingest_host, settings.ingest_port)
            await site.start()
            log.info("ingest_listening", host=settings.ingest_host, port=settings.ingest_port)
            relay = OutboxRelay(pool, nc.jetstream())
            sweeper = asyncio.create_task(claims.run_sweeper(pool, store, stop))
            try:
                await relay.run(stop)
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                await runner.cleanup()
    finally:
        await nc.drain()
        await pool.close()
