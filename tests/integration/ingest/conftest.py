"""Ingest API under test: the real app (create_app) on a loopback port, against the session's
real Postgres, SeaweedFS and nats-server, plus an upstream recording server the tests script."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiobotocore.session
import aiohttp
import asyncpg
import pytest
from aiohttp import web

from embedded import demo as demo_servers
from libs import apikeys
from libs.settings import Settings
from services.ingest.app import create_app, make_runner
from tests.stack_fixtures import API_KEY, FIXTURES, create_database

WAV = (FIXTURES / "hello_campaign.wav").read_bytes()
OPUS = (FIXTURES / "hello_campaign.opus").read_bytes()
# Small enough to exercise 413 quickly; every fixture recording fits under it.
MAX_BYTES = 1024 * 1024


@dataclass
class Upstream:
    """A recording server: counts hits per path; /gate/* paths wait until opened."""

    url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def audio(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            name = request.match_info["name"]
            body = OPUS if name.endswith(".opus") else WAV
            return web.Response(body=body, content_type="application/octet-stream")

        async def gated(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            await self.gate.wait()
            return web.Response(body=WAV, content_type="audio/wav")

        async def redirect(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            raise web.HTTPFound(request.query["to"])

        async def text(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            return web.Response(text="<html>not audio</html>" * 10, content_type="text/html")

        async def empty(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            return web.Response(body=b"", content_type="audio/wav")

        async def status(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            return web.Response(status=int(request.match_info["code"]), text="nope")

        async def big(request: web.Request) -> web.StreamResponse:
            # A real WAV header followed by more bytes than the limit, streamed without a
            # Content-Length (chunked), so only counting the body can catch it.
            self.hits[request.path] += 1
            resp = web.StreamResponse()
            if request.query.get("declared"):
                resp.content_length = MAX_BYTES * 3
            await resp.prepare(request)
            await resp.write(WAV[:4096])
            chunk = b"\0" * 65536
            try:
                for _ in range((MAX_BYTES * 3) // len(chunk)):
                    await resp.write(chunk)
            except ConnectionError:
                return resp
            return resp

        app = web.Application()
        app.router.add_get("/audio/{name}", audio)
        app.router.add_get("/gate/{name}", gated)
        app.router.add_get("/redirect", redirect)
        app.router.add_get("/text", text)
        app.router.add_get("/empty", empty)
        app.router.add_get("/status/{code}", status)
        app.router.add_get("/big", big)
        return app


@pytest.fixture(scope="package")
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    async with demo_servers.serve(up.app()) as url:
        up.url = url
        yield up


@pytest.fixture(scope="package")
async def ingest_settings(
    settings: Settings,
    upstream: Upstream,
    postgres_server: Any,
    samples_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings with a database of its own: no relay or transcriber of the session's running
    stack sees these jobs, so tests can put jobs in any state and count outbox events."""
    from embedded import demo_data as demo
    from libs.provision import ensure_bootstrap_key, migrate_database

    dsn = await create_database(postgres_server, "ingest")
    host = upstream.url.split("://", 1)[1]
    ours = replace(
        settings,
        database_url=dsn,
        ssrf_allowlist=f"{settings.ssrf_allowlist},{host}",
        max_upload_bytes=MAX_BYTES,
        download_read_timeout=10.0,
        # Uploads spooled where this session alone looks (and cleans up at start).
        ingest_spool_dir_override=tmp_path_factory.mktemp("spool"),
    )
    await migrate_database(dsn)
    await ensure_bootstrap_key(ours)
    conn = await asyncpg.connect(dsn)
    try:
        await demo.seed(conn, samples_url)
    finally:
        await conn.close()
    return ours


@dataclass
class Api:
    base_url: str
    session: aiohttp.ClientSession
    settings: Settings
    pool: asyncpg.Pool

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-Key"] = key
        async with self.session.request(
            method, self.base_url + path, headers=hdrs, **kwargs
        ) as resp:
            raw = await resp.read()
            try:
                body: Any = await resp.json(content_type=None) if raw else None
            except ValueError:
                body = raw
            return resp.status, body, dict(resp.headers)

    async def submit(
        self, data: Any, *, key: str | None = API_KEY, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        return await self.request(
            "POST", "/api/media/transcribe", key=key, headers=headers, data=data
        )

    async def objects(self, prefix: str) -> list[str]:
        """Every object key under `prefix` in the bucket: proves nothing was left behind."""
        s3 = self.settings.require_s3()
        session = aiobotocore.session.get_session()
        async with session.create_client(
            "s3",
            endpoint_url=s3.endpoint,
            region_name=s3.region,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
        ) as client:
            resp = await client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
            return [o["Key"] for o in resp.get("Contents", [])]

    async def rows(self, prefix: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM media_pipeline.audio_files WHERE tenant_prefix = $1", prefix
            )
        )

    async def claims(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM media_pipeline.ingest_claims"))


@asynccontextmanager
async def serve_api(settings: Settings, **options: Any) -> AsyncIterator[Api]:
    """The ingest app on a free loopback port; `options` go to create_app. Its background
    sweeper is off unless asked for: tests run the sweeper themselves (run_until_idle), so its
    timing never races their assertions."""
    from libs.db import create_pool

    app = create_app(settings, **{"sweeper": False, **options})
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    pool = await create_pool(settings.require_database_url())
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{port}", session, settings, pool)
    finally:
        await pool.close()
        await runner.cleanup()


@pytest.fixture(scope="package")
async def api(ingest_settings: Settings) -> AsyncIterator[Api]:
    async with serve_api(ingest_settings) as served:
        yield served


async def bootstrap_key_id(api: Api) -> uuid.UUID:
    key_id = await api.pool.fetchval(
        "SELECT id FROM media_pipeline.api_keys WHERE key_hash = $1", apikeys.hash_key(API_KEY)
    )
    assert isinstance(key_id, uuid.UUID)
    return key_id


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def make_key(pool: asyncpg.Pool, **kwargs: Any) -> tuple[str, apikeys.ApiKey]:
    """A key of its own tenant (a fresh prefix) unless the test says otherwise."""
    if "tenant_prefix" not in kwargs and not kwargs.get("unscoped"):
        kwargs["tenant_prefix"] = unique_prefix()
    async with pool.acquire() as conn:
        return await apikeys.create(conn, name=f"test-{uuid.uuid4().hex[:6]}", **kwargs)
