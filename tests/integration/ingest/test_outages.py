"""Dependency outages: Postgres or S3 down -> 503 + Retry-After (never 500, never a hang) with
nothing half-written; NATS down -> submissions are unaffected (the outbox decouples them) and
only /readyz says so.

Real servers are stopped and restarted (same ports, same data) - servers of this module's own,
not the session's: services that other tests keep running on the session's servers must not
see these outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import pytest

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from embedded.seaweed import SeaweedS3Server
from libs.provision import provision
from libs.settings import S3Settings, Settings
from tests.integration.ingest.conftest import Api, Upstream, serve_api, unique_prefix
from tests.stack_fixtures import API_KEY, eventually

pytestmark = pytest.mark.integration

# Generous: a 503 must come back well within this, never a hang.
ANSWER_WITHIN = 45.0


@dataclass
class OwnStack:
    postgres: PostgresServer
    nats: NatsServer
    s3: SeaweedS3Server
    api: Api


@pytest.fixture(scope="module")
async def own(
    tmp_path_factory: pytest.TempPathFactory, ingest_settings: Settings, samples_url: str
) -> AsyncIterator[OwnStack]:
    from embedded import demo_data as demo

    base = tmp_path_factory.mktemp("outages")
    async with (
        PostgresServer(base / "pg") as pg,
        NatsServer(base / "nats") as nats,
        SeaweedS3Server(base / "s3") as s3,
    ):
        settings = replace(
            ingest_settings.with_infrastructure(),
            database_url=pg.dsn,
            nats_url=nats.url,
            s3=S3Settings(
                endpoint=s3.endpoint,
                bucket="outages",
                access_key=s3.access_key,
                secret_key=s3.secret_key,
            ),
            api_key=API_KEY,
        )
        await provision(settings)
        conn = await asyncpg.connect(pg.dsn)
        try:
            await demo.seed(conn, samples_url)
        finally:
            await conn.close()
        async with serve_api(settings) as api:
            yield OwnStack(pg, nats, s3, api)


async def _ready(api: Api) -> bool:
    status, _, _ = await api.request("GET", "/readyz", key=None)
    return status == 200


async def _unavailable(body: Any, headers: dict[str, str], code: str) -> None:
    assert body["error"] == code, body
    assert int(headers["Retry-After"]) > 0


async def test_postgres_down_answers_503_and_recovers(own: OwnStack, upstream: Upstream) -> None:
    api, postgres_server = own.api, own.postgres
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    await postgres_server.stop()
    try:
        status, body, headers = await asyncio.wait_for(
            api.submit({"url": url, "b2_prefix": prefix}), ANSWER_WITHIN
        )
        assert status == 503, body
        await _unavailable(body, headers, "database_unavailable")
        status, body, headers = await asyncio.wait_for(
            api.request("GET", f"/api/media/status/{uuid.uuid4()}"), ANSWER_WITHIN
        )
        assert status == 503, body
        status, body, _ = await api.request("GET", "/readyz", key=None)
        assert status == 503
        assert body["checks"]["postgres"] != "ok"
        assert body["checks"]["s3"] == "ok"
    finally:
        await postgres_server.start()
    await eventually(lambda: _ready(api), timeout=60)
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 200, body
    assert upstream.hits[url.split(upstream.url, 1)[1]] == 1  # the failed attempt never downloaded
    assert len(await api.rows(prefix)) == 1
    assert len(await api.objects(prefix)) == 1


async def test_postgres_lost_mid_submission_leaves_no_object(
    own: OwnStack, upstream: Upstream
) -> None:
    api, postgres_server = own.api, own.postgres
    prefix = unique_prefix()
    path = f"/gate/{uuid.uuid4().hex}.wav"
    upstream.gate.clear()
    task = asyncio.create_task(api.submit({"url": upstream.url + path, "b2_prefix": prefix}))
    try:
        # Claimed and downloading: now the database goes away before the job row is written.
        await eventually(lambda: _hit(upstream, path))
        await postgres_server.stop()
        upstream.gate.set()
        status, body, headers = await asyncio.wait_for(task, ANSWER_WITHIN)
    finally:
        upstream.gate.set()
        await postgres_server.start()
    assert status == 503, body
    await _unavailable(body, headers, "database_unavailable")
    assert await api.objects(prefix) == []
    await eventually(lambda: _ready(api), timeout=60)
    assert await api.rows(prefix) == []


async def test_s3_down_answers_503_and_writes_no_row(own: OwnStack, upstream: Upstream) -> None:
    api, s3_server = own.api, own.s3
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    await s3_server.stop()
    try:
        status, body, headers = await asyncio.wait_for(
            api.submit({"url": url, "b2_prefix": prefix}), ANSWER_WITHIN
        )
        assert status == 503, body
        await _unavailable(body, headers, "storage_unavailable")
        assert await api.rows(prefix) == []
        status, body, _ = await api.request("GET", "/readyz", key=None)
        assert status == 503
        assert body["checks"]["s3"] != "ok"
    finally:
        await s3_server.start()
    await eventually(lambda: _ready(api), timeout=60)
    # Nothing was left behind, and the retry goes through (its claim was released).
    assert await api.objects(prefix) == []
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 200, body
    assert len(await api.objects(prefix)) == 1


async def test_nats_down_does_not_fail_submissions(own: OwnStack, upstream: Upstream) -> None:
    api, nats_server = own.api, own.nats
    prefix = unique_prefix()
    await nats_server.stop()
    try:
        status, body, _ = await asyncio.wait_for(
            api.submit(
                {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", "b2_prefix": prefix}
            ),
            ANSWER_WITHIN,
        )
        assert status == 200, body
        # The event waits in the outbox, in the same transaction as the job row.
        (row,) = await api.rows(prefix)
        pending = await api.pool.fetchval(
            "SELECT count(*) FROM media_pipeline.outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
            f"%{row['id']}%",
        )
        assert pending == 1
        status, body, headers = await api.request("GET", "/readyz", key=None)
        assert status == 503
        assert body["checks"]["nats"] != "ok"
        assert body["checks"]["postgres"] == "ok"
        assert "Retry-After" in headers
    finally:
        await nats_server.start()
    await eventually(lambda: _ready(api), timeout=60)


async def _hit(upstream: Upstream, path: str) -> bool:
    return upstream.hits[path] >= 1


async def test_s3_refusing_credentials_answers_503_and_writes_nothing(
    own: OwnStack, upstream: Upstream
) -> None:
    s3 = own.api.settings.require_s3()
    misconfigured = replace(own.api.settings, s3=replace(s3, secret_key="not-the-secret"))
    prefix = unique_prefix()
    async with serve_api(misconfigured) as api:
        status, body, headers = await asyncio.wait_for(
            api.submit(
                {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", "b2_prefix": prefix}
            ),
            ANSWER_WITHIN,
        )
    assert status == 503, body
    assert body["error"] == "storage_refused", body
    assert int(headers["Retry-After"]) > 0
    assert await own.api.rows(prefix) == []
    assert await own.api.objects(prefix) == []
