"""The ingest HTTP API: app factory, error middleware, clients opened in cleanup_ctx.

Routes live in services/ingest/routes/, one module per area, each with a `register(app)` and
a route table (`ROUTES`, services/ingest/openapi.py) documenting every handler beside it;
answers are the Structs of services/ingest/bodies.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS

from libs import bus, db
from libs.blobstore import BlobStore, S3BlobStore
from libs.errors import DomainError, Unavailable
from libs.metrics import HTTP_LATENCY, HTTP_REQUESTS
from libs.ratelimit import PostgresRateLimiter
from libs.settings import Settings
from services.ingest.context import (
    NATS_CLIENT,
    POOL,
    RATE_LIMITER,
    SETTINGS,
    STORE,
    SUBMIT_CTX,
    TRACE_ID,
)
from services.ingest.errors import answer, json_error, translate_driver_error
from services.ingest.fetch import SafeAudioFetcher, callback_validator
from services.ingest.lookup import load_queries
from services.ingest.routes import ROUTE_MODULES
from services.ingest.submit import SubmitContext

log = structlog.get_logger()

# Short, and extended by the owner's heartbeat: claims of a dead process expire within it.
CLAIM_TTL = 90.0
# Raw connection errors are a last line of defence: the database boundary translates them.
_ANSWERED: tuple[type[BaseException], ...] = (DomainError, *db.CONNECTION_ERRORS)


@web.middleware
async def handle_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    trace_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    request[TRACE_ID] = trace_id
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(trace_id=trace_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-ID"] = trace_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except _ANSWERED as exc:
            error = exc if isinstance(exc, DomainError) else translate_driver_error(exc)
            assert error is not None
            result = answer(error)
            status = result.status
            if isinstance(error, Unavailable):
                outage = log.error if error.refused else log.warning
                outage(
                    "dependency_refused" if error.refused else "dependency_unavailable",
                    dependency=error.dependency,
                    error=str(exc),
                )
            return json_error(result, {"X-Request-ID": trace_id})
        finally:
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(route=route, method=request.method, status=str(status)).inc()
            HTTP_LATENCY.labels(route=route, method=request.method).observe(elapsed)
            log.info(
                "http_request",
                method=request.method,
                path=request.path,
                status=status,
                ms=round(elapsed * 1000, 1),
            )


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    store: BlobStore | None = None,
    nc: NATS | None = None,
    claim_wait: float = 30.0,
    claim_ttl: float | None = None,
) -> web.Application:
    """Build the app. Clients not passed in are opened on startup and closed on cleanup.

    `claim_wait`: how long a duplicate submission waits for the one in progress before 409;
    `claim_ttl`: how long a submission's claim lives between heartbeats' extensions."""
    app = web.Application(middlewares=[handle_errors], client_max_size=1024 * 1024)
    app[SETTINGS] = settings

    async def clients(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
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
            )
            yield

    app.cleanup_ctx.append(clients)
    for module in ROUTE_MODULES:
        module.register(app)
    return app
