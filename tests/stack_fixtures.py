"""Fixtures that build on the server fixtures: a migrated database, provisioned bus and bucket,
a signature-verifying webhook receiver, and the three services running in-process."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats
import pytest
from aiohttp import web
from nats.js import JetStreamContext
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from embedded import demo as demo_servers
from embedded import demo_data as demo
from libs.bus import ensure_consumer, ensure_stream
from libs.contracts.streams import ConsumerSpec, StreamSpec
from libs.provision import provision
from libs.settings import S3Settings, Settings

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "test-bootstrap-key"
WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ="

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def create_database(postgres_server: Any, prefix: str) -> str:
    """A new, empty database on the session's Postgres; returns its DSN. Tests that need a
    database of their own (no other relay or worker sees their rows) start from here."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return str(postgres_server.dsn).rsplit("/", 1)[0] + "/" + name


@asynccontextmanager
async def scratch_stream(
    nats_url: str, *, ack_wait: float, max_deliver: int = 3
) -> AsyncIterator[tuple[JetStreamContext, str, str, str]]:
    """A throwaway stream + durable pull consumer of its own: (js, stream, subject, durable)."""
    tag = uuid.uuid4().hex[:8]
    stream, subject, durable = f"T_{tag}", f"test.{tag}", f"worker_{tag}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(
        js, StreamSpec(name=stream, subjects=(f"{subject}.>",), max_age_seconds=3600)
    )
    await ensure_consumer(
        js,
        stream,
        ConsumerSpec(
            durable=durable,
            filter_subjects=(f"{subject}.>",),
            ack_wait_seconds=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=100,
            description="test",
        ),
    )
    try:
        yield js, stream, subject, durable
    finally:
        await js.delete_stream(stream)
        await nc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebhookInbox:
    """A receiver that verifies like a customer would, and lets tests await deliveries."""

    secret: str
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    status_script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        verifier = Webhook(self.secret)

        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            # Every delivery is verified, scripted answers included: there is no unsigned one.
            try:
                payload = verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.rejected += 1
                return web.Response(status=400)
            if self.status_script:
                status, headers = self.status_script.pop(0)
                async with self._changed:
                    self.received.append(
                        {"status": status, "headers": dict(request.headers), "payload": None}
                    )
                    self._changed.notify_all()
                return web.Response(status=status, headers=headers)
            async with self._changed:
                self.received.append(
                    {"status": 200, "headers": dict(request.headers), "payload": payload}
                )
                self._changed.notify_all()
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        return app

    def accepted_for(self, audio_file_id: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.received
            if r["payload"] is not None and r["payload"]["data"]["audio_file_id"] == audio_file_id
        ]

    async def wait_for(
        self, audio_file_id: str, *, count: int = 1, timeout: float = 120.0
    ) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.accepted_for(audio_file_id)) >= count),
                timeout,
            )
        return self.accepted_for(audio_file_id)


@pytest.fixture(scope="session")
async def samples_url() -> AsyncIterator[str]:
    async with demo_servers.serve(demo_servers.samples_app(FIXTURES)) as url:
        yield url


@pytest.fixture(scope="session")
async def webhook_inbox() -> AsyncIterator[WebhookInbox]:
    inbox = WebhookInbox(secret=WEBHOOK_SECRET)
    async with demo_servers.serve(inbox.app()) as url:
        inbox.url = url + "/hooks"
        yield inbox


@pytest.fixture(scope="session")
async def database_url(postgres_server: Any, samples_url: str) -> str:
    """A fresh database for this test session, with the demo source tables seeded."""
    dsn = await create_database(postgres_server, "gw")
    conn = await asyncpg.connect(dsn)
    try:
        await demo.seed(conn, samples_url)
    finally:
        await conn.close()
    return dsn


@pytest.fixture(scope="session")
async def settings(
    database_url: str,
    nats_server: Any,
    s3_server: Any,
    samples_url: str,
    webhook_inbox: WebhookInbox,
) -> Settings:
    s = Settings.from_env({})
    allow = ",".join(
        u.split("://", 1)[1].split("/", 1)[0] for u in (samples_url, webhook_inbox.url)
    )
    s = replace(
        s.with_infrastructure(
            database_url=database_url,
            nats_url=nats_server.url,
            s3=S3Settings(
                endpoint=s3_server.endpoint,
                bucket="test-bucket",
                access_key=s3_server.access_key,
                secret_key=s3_server.secret_key,
            ),
        ),
        api_key=API_KEY,
        gateway_prefix="",
        ingest_port=free_port(),
        ssrf_allowlist=allow,
        webhook_url=webhook_inbox.url,
        webhook_secret=WEBHOOK_SECRET,
        transcriber_concurrency=2,
        default_phone_region="GB",
    )
    await provision(s)
    return s


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from libs.db import create_pool

    p = await create_pool(settings.require_database_url())
    yield p
    await p.close()


@dataclass
class RunningStack:
    settings: Settings
    base_url: str
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]


ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


@asynccontextmanager
async def services_running(
    settings: Settings, mains: dict[str, ServiceMain], *, timeout: float = 60
) -> AsyncIterator[RunningStack]:
    """The services' `run(settings, stop)` as tasks in this loop, as `transcribe up` runs them,
    until ingest's /readyz answers 200 (a service that crashes meanwhile raises at once); on
    exit, stopped and awaited."""
    import aiohttp

    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(settings, stop), name=name) for name, run in mains.items()]
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"

    async def ready() -> bool:
        for t in tasks:
            if t.done():
                t.result()  # surface a crashed service immediately
        try:
            async with aiohttp.ClientSession() as s, s.get(base + "/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await eventually(ready, timeout=timeout)
        yield RunningStack(settings=settings, base_url=base, stop=stop, tasks=tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)


def pipeline_mains(*, insights: bool = False) -> dict[str, ServiceMain]:
    """ingest + transcriber + notifier (+ insights): the pipeline of `transcribe up`."""
    from services.ingest import main as ingest_main
    from services.insights import main as insights_main
    from services.notifier import main as notifier_main
    from services.transcriber import main as transcriber_main

    mains: dict[str, ServiceMain] = {
        "ingest": ingest_main.run,
        "transcriber": transcriber_main.run,
        "notifier": notifier_main.run,
    }
    if insights:
        mains["insights"] = insights_main.run
    return mains


@pytest.fixture(scope="session")
async def running_stack(settings: Settings) -> AsyncIterator[RunningStack]:
    """ingest + transcriber + notifier as in `transcribe up`, against the fixture servers."""
    async with services_running(settings, pipeline_mains()) as stack:
        yield stack
