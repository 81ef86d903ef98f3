"""The embedded servers every bench runs against, provisioned as `transcribe init` would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from embedded.seaweed import SeaweedS3Server
from libs.provision import provision
from libs.settings import S3Settings, Settings


@asynccontextmanager
async def infrastructure(tmp: Path, *, api_key: str) -> AsyncIterator[Settings]:
    """nats-server, Postgres and SeaweedFS under `tmp`; settings with `api_key` as bootstrap key
    and a bucket named "bench"."""
    async with (
        NatsServer(tmp / "nats") as nats,
        PostgresServer(tmp / "pg") as pg,
        SeaweedS3Server(tmp / "s3") as s3,
    ):
        settings = Settings.from_env({}).with_infrastructure(
            database_url=pg.dsn,
            nats_url=nats.url,
            s3=S3Settings(
                endpoint=s3.endpoint,
                bucket="bench",
                access_key=s3.access_key,
                secret_key=s3.secret_key,
            ),
        )
        settings = replace(settings, api_key=api_key)
        await provision(settings)
        yield settings
