"""services/insights on infrastructure of its own: its own nats-server and database (no other
service's consumer or relay sees these jobs), the session's SeaweedFS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext

from embedded.nats import NatsServer
from libs import bus, db
from libs.blobstore import S3BlobStore
from libs.provision import ensure_bucket, ensure_bus, migrate_database
from libs.settings import S3Settings, Settings
from tests.stack_fixtures import create_database


@pytest.fixture(scope="session")
async def insights_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path_factory.mktemp("insights-nats")) as server:
        yield server


@pytest.fixture(scope="session")
async def insights_settings(
    postgres_server: Any, insights_nats: NatsServer, s3_server: Any
) -> Settings:
    dsn = await create_database(postgres_server, "ins")
    await migrate_database(dsn)
    s = replace(
        Settings.from_env({}).with_infrastructure(
            database_url=dsn,
            nats_url=insights_nats.url,
            s3=S3Settings(
                endpoint=s3_server.endpoint,
                bucket="insights-bucket",
                access_key=s3_server.access_key,
                secret_key=s3_server.secret_key,
            ),
        ),
        public_base_url_override="https://gateway.example",
    )
    await ensure_bus(s)
    await ensure_bucket(s)
    return s


@pytest.fixture
async def ipool(insights_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(insights_settings.require_database_url())
    yield p
    await p.close()


@pytest.fixture
async def ijs(insights_settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await bus.connect(insights_settings.nats_servers, name="insights-tests")
    yield nc.jetstream()
    await nc.drain()


@pytest.fixture
async def objects(insights_settings: Settings) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(insights_settings.require_s3()) as store:
        yield store
