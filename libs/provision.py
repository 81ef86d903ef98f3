"""Provisioning shared by `transcribe up` and `transcribe init`: schema, bucket, stream, consumers,
bootstrap key. Every step is idempotent, so running it at each start is safe."""

from __future__ import annotations

import structlog

from libs import apikeys, db
from libs.blobstore import S3BlobStore
from libs.bus import connect, ensure_consumer, ensure_stream
from libs.contracts import streams
from libs.db import migrate
from libs.settings import Settings

log = structlog.get_logger()


async def migrate_database(dsn: str) -> int:
    conn = await db.connect(dsn)
    try:
        return len(await migrate.migrate(conn))
    finally:
        await conn.close()


async def ensure_bootstrap_key(settings: Settings) -> str | None:
    if not settings.api_key:
        return None
    conn = await db.connect(settings.require_database_url())
    try:
        return await apikeys.ensure_bootstrap(
            conn,
            settings.api_key,
            tenant_prefix=settings.gateway_prefix,
            webhook_url=settings.webhook_url,
            webhook_secret=settings.webhook_secret,
        )
    finally:
        await conn.close()


async def ensure_bus(settings: Settings, *, replicas: int = 1) -> None:
    nc = await connect(settings.nats_servers, name="provision")
    try:
        js = nc.jetstream()
        await ensure_stream(js, streams.stream_spec(settings.stream_max_age_days, replicas))
        await ensure_consumer(
            js,
            streams.STREAM_NAME,
            streams.transcriber_consumer(ack_wait=settings.transcriber_ack_wait),
        )
        for scope in settings.transcriber_scope:
            await ensure_consumer(
                js,
                streams.STREAM_NAME,
                streams.transcriber_consumer(scope, ack_wait=settings.transcriber_ack_wait),
            )
        await ensure_consumer(js, streams.STREAM_NAME, streams.notifier_consumer())
        await ensure_consumer(js, streams.STREAM_NAME, streams.insights_consumer())
        # Dead letters: the advisory stream must exist before the first advisory is published.
        await ensure_stream(
            js, streams.deadletter_stream_spec(settings.stream_max_age_days, replicas)
        )
        await ensure_consumer(js, streams.DEADLETTER_STREAM_NAME, streams.deadletter_consumer())
    finally:
        await nc.drain()


async def ensure_bucket(settings: Settings) -> None:
    async with S3BlobStore.open(settings.require_s3()) as store:
        await store.ensure_bucket()


async def provision(settings: Settings) -> None:
    applied = await migrate_database(settings.require_database_url())
    await ensure_bootstrap_key(settings)
    await ensure_bucket(settings)
    await ensure_bus(settings, replicas=settings.stream_replicas)
    log.info("provisioned", migrations_applied=applied)
