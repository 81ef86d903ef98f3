"""The ingest HTTP API: app factory, error middleware, clients opened in cleanup_ctx.

Routes live in services/ingest/routes/, one module per area, each with a `register(app)`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS

from libs import bus, db
from libs.blobstore import BlobStore, BlobStoreRefused, BlobStoreUnavailable, S3BlobStore
from libs.bus import BusUnavailable
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
from services.ingest.errors import ApiError
from services.ingest.fetch import SafeAudioFetcher, callback_validator
from services.ingest.lookup import load_queries
from services.ingest.routes import ROUTE_MODULES
from services.ingest.submit import SubmitContext

log = structlog.get_logger()

# Short, and extended by the owner's heartbeat: claims of a dead process expire within it.
CLAIM_TTL = 90.0


def _error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


@dataclass(frozen=True, slots=True)
class _Outage:
    errors: tuple[type[BaseException], ...]
    dependency: str
    code: str
    detail: str
    retry_after: int = 5
    # A misconfiguration rather than an outage: logged as an error.
    refused: bool = False


# Dependency failures, answered 503 + Retry-After (never 500); the first match wins.
_OUTAGES = (
    _Outage(
        db.UNAVAILABLE, "postgres", "database_unavailable", "Postgres is unavailable, retry later"
    ),
    _Outage(
        (BlobStoreUnavailable,),
        "s3",
        "storage_unavailable",
        "object storage is unavailable, retry later",
    ),
    # Wrong credentials or permissions: nothing a client can fix, and no retry helps until an
    # operator does; said loudly, answered as the outage it is.
    _Outage(
        (BlobStoreRefused,),
        "s3",
        "storage_refused",
        "object storage refused the request (check the gateway's S3 credentials)",
        retry_after=60,
        refused=True,
    ),
    _Outage((BusUnavailable,), "nats", "bus_unavailable", "NATS is unavailable, retry later"),
)
_OUTAGE_ERRORS = tuple(error for outage in _OUTAGES for error in outage.errors)


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
        except ApiError as exc:
            status = exc.status
            return _error(
                exc.status, exc.code, exc.detail, {**exc.headers, "X-Request-ID": trace_id}
            )
        except web.HTTPException as exc:
            status = exc.status
            raise
        except _OUTAGE_ERRORS as exc:
            outage = next(o for o in _OUTAGES if isinstance(exc, o.errors))
            status = 503
            report = log.error if outage.refused else log.warning
            report(
                "dependency_refused" if outage.refused else "dependency_unavailable",
                dependency=outage.dependency,
                error=str(exc),
            )
            return _error(503, outage.code, outage.detail, {"Retry-After": str(outage.retry_after)})
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
