"""Shared pytest fixtures.

Sections:

* Embedded infrastructure servers (session scope): real nats-server, Postgres and SeaweedFS.
* Stack fixtures (tests/stack_fixtures.py): migrated database, settings, webhook inbox, and the
  three services running in-process.
* Mail fixtures (tests/mail_fixtures.py): real SMTP servers (aiosmtpd) on loopback, plain,
  STARTTLS, SMTPS and AUTH, recording what they receive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from embedded.seaweed import SeaweedS3Server

pytest_plugins = ["tests.stack_fixtures", "tests.mail_fixtures"]

# ================================================================================================
# Embedded infrastructure servers
#
# Each starts on first use, on free loopback ports with its data in a session temp dir, and
# stops at session end. Tests may stop() and start() one to simulate an outage: a restart keeps
# the data dir and the ports, so clients holding the URL/DSN reconnect to the same place.
# ================================================================================================


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
async def postgres_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PostgresServer]:
    async with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
async def s3_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SeaweedS3Server]:
    async with SeaweedS3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server
