"""The notifier's own infrastructure: its own nats-server and database, so deliveries made here
never meet the session stack's notifier (which runs the default, hours-long schedule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext

from embedded.nats import NatsServer
from libs import bus, db
from libs.provision import ensure_bus, migrate_database
from libs.settings import Settings
from tests.integration.notifier.harness import Notifier
from tests.stack_fixtures import create_database


@pytest.fixture(scope="session")
async def notifier_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path_factory.mktemp("notifier-nats")) as server:
        yield server


@pytest.fixture(scope="session")
async def notifier_settings(postgres_server: Any, notifier_nats: NatsServer) -> Settings:
    dsn = await create_database(postgres_server, "nt")
    await migrate_database(dsn)
    s = replace(
        Settings.from_env({}),
        database_url=dsn,
        nats_url=notifier_nats.url,
        # Short, so a test of a hanging receiver stays short.
        webhook_timeout=3.0,
        public_base_url_override="https://gateway.example",
    )
    await ensure_bus(s)
    return s


@pytest.fixture
async def npool(notifier_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(notifier_settings.require_database_url())
    yield p
    await p.close()


@pytest.fixture
async def js(notifier_settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await bus.connect(notifier_settings.nats_servers, name="notifier-tests")
    yield nc.jetstream()
    await nc.drain()


@pytest.fixture
async def notifier(notifier_settings: Settings) -> AsyncIterator[Notifier]:
    """Not started: a test sets its allowlist and policy, then starts (and may restart) it."""
    n = Notifier(notifier_settings)
    yield n
    await n.stop()
