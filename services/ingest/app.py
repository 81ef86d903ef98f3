"""The ingest HTTP API: app factory, the middleware chain (services/ingest/middleware.py),
clients opened in cleanup_ctx.

Routes live in services/ingest/routes/, one module per area, each with a `register(app)` and
a route table (`ROUTES`, services/ingest/openapi.py) documenting every handler beside it;
answers are the Structs of services/ingest/bodies.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from nats.aio.client import Client as NATS

from libs import bus, db
from libs.audio.limits import AudioLimits
from libs.blobstore import BlobStore, S3BlobStore
from libs.bus import jetstream
from libs.ratelimit import PostgresRateLimiter
from libs.settings import Settings
from services.ingest import bodies
from services.ingest.context import (
    CLOCK,
    NATS_CLIENT,
    POOL,
    RATE_LIMITER,
    SETTINGS,
    STORE,
    SUBMIT_CTX,
    Clock,
    utcnow,
)
from services.ingest.fetch import SafeAudioFetcher, callback_validator
from services.ingest.form import clean_spool
from services.ingest.lookup import load_queries
from services.ingest.middleware import IN_FLIGHT, MIDDLEWARES, InFlight
from services.ingest.routes import ROUTE_MODULES
from services.ingest.submit import SubmitContext
from services.ingest.sweeper import Sweeper

log = structlog.get_logger()

# Short, and extended by the owner's heartbeat: claims of a dead process expire within it.
CLAIM_TTL = 90.0


def runner_options(settings: Settings) -> dict[str, Any]:
    """Options of the AppRunner serving the API (`make_runner`).

    aiohttp's keep-alive timer also runs while a connection has not sent complete request
    headers, so `keepalive_timeout` is the header read timeout too: a client dribbling its
    headers is cut off after INGEST_IDLE_TIMEOUT. Over-long request lines and header fields
    are refused by aiohttp's parser (400) before the app sees a request."""
    return {
        "access_log": None,
        "keepalive_timeout": settings.ingest_idle_timeout,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 64,
        # A client that disconnects does not cancel its handler: the handler's own cleanup
        # (spool files, claims) runs to completion instead of being interrupted.
        "handler_cancellation": False,
    }


class _JsonErrorsProtocol(RequestHandler):
    """aiohttp's connection protocol, answering its own errors as JSON `{error, detail}`: a
    request its HTTP parser refuses (bad framing, control bytes in a header, over-long lines)
    never reaches the app and its middleware, and an unhandled exception is a bare 500."""

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A request the HTTP parser refused is the client's fault, not the gateway's: one info
        line, not an ERROR traceback a hostile client could fill the operator's logs with."""
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or "").strip().splitlines()[:1]
            log.info("http_refused", status=exc.code, error=first[0][:200] if first else "")
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if already sent
        if status == 400:
            first = (message or "").strip().splitlines()[:1]
            code, detail = "invalid_http", "the request is not valid HTTP"
            if first:
                detail += f": {first[0][:200]}"
        elif status == 500:
            code, detail = "internal_error", "the gateway failed; the error is logged"
        else:
            code, detail = f"http_{status}", HTTPStatus(status).phrase
        response = bodies.answer(bodies.ErrorBody(error=code, detail=detail), status=status)
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsProtocol(self, loop=self._loop, **self._kwargs)


class IngestRunner(web.AppRunner):
    """The AppRunner of the API: aiohttp's own error answers are JSON too."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorsServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner serving the API with its connection limits (main.py and the tests)."""
    return IngestRunner(app, **runner_options(settings))


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    store: BlobStore | None = None,
    nc: NATS | None = None,
    claim_wait: float = 30.0,
    claim_ttl: float | None = None,
    sweeper: bool = True,
    clock: Clock | None = None,
) -> web.Application:
    """Build the app. Clients not passed in are opened on startup and closed on cleanup.

    `claim_wait`: how long a duplicate submission waits for the one in progress before 409;
    `claim_ttl`: how long a submission's claim lives between heartbeats' extensions;
    `sweeper`: run the background sweeper (finishes deletions; services/ingest/sweeper.py);
    `clock`: the time console sessions and logins are judged by (default: now, UTC)."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[IN_FLIGHT] = InFlight(limit=settings.ingest_max_connections)
    app[CLOCK] = clock or utcnow

    async def spool(app: web.Application) -> None:
        removed = clean_spool(settings.ingest_spool_dir)
        if removed:
            log.warning(
                "spool_leftovers_removed", count=removed, dir=str(settings.ingest_spool_dir)
            )

    app.on_startup.append(spool)

    async def clients(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await _open_clients(app, stack, settings, pool=pool, store=store, nc=nc)
            async with app[POOL].acquire() as conn:
                queries = await load_queries(settings, conn)
            fetcher = await stack.enter_async_context(SafeAudioFetcher.open_client(settings))
            app[RATE_LIMITER] = PostgresRateLimiter(app[POOL])
            app[SUBMIT_CTX] = SubmitContext(
                pool=app[POOL],
                store=app[STORE],
                fetcher=fetcher,
                queries=queries,
                default_phone_region=settings.default_phone_region,
                validate_callback=callback_validator(settings),
                claim_ttl=CLAIM_TTL if claim_ttl is None else claim_ttl,
                claim_wait=claim_wait,
                audio_limits=AudioLimits(max_seconds=settings.max_audio_seconds),
            )
            if sweeper:
                _start_sweeper(app, stack)
            yield

    app.cleanup_ctx.append(clients)
    for module in ROUTE_MODULES:
        module.register(app)
    return app


async def _open_clients(
    app: web.Application,
    stack: AsyncExitStack,
    settings: Settings,
    *,
    pool: asyncpg.Pool | None,
    store: BlobStore | None,
    nc: NATS | None,
) -> None:
    """The pool, blob store and NATS client: those passed in, else opened (closed by `stack`)."""
    app[POOL] = pool or await db.create_pool(settings.require_database_url())
    if pool is None:
        stack.push_async_callback(app[POOL].close)
    if store is None:
        s3 = await stack.enter_async_context(S3BlobStore.open(settings.require_s3()))
        app[STORE] = s3
    else:
        app[STORE] = store
    if nc is None:
        client = await bus.connect(settings.nats_servers, name="ingest")
        stack.push_async_callback(client.drain)
        app[NATS_CLIENT] = client
    else:
        app[NATS_CLIENT] = nc


def _start_sweeper(app: web.Application, stack: AsyncExitStack) -> None:
    """Run the sweeper in the background; `stack` stops it and waits for it on cleanup."""
    stop = asyncio.Event()
    sweeper = Sweeper(
        app[POOL],
        app[STORE],
        eraser=jetstream.StreamEraser(app[NATS_CLIENT].jetstream()),
        stream_max_age_days=app[SETTINGS].stream_max_age_days,
    )
    task = asyncio.create_task(sweeper.run(stop))

    async def stop_sweeper() -> None:
        stop.set()
        await task

    stack.push_async_callback(stop_sweeper)
