"""The ingest HTTP API: app factory, typed app keys, clients opened in cleanup_ctx."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs import apikeys, bus, db
from libs.blobstore import BlobNotFound, BlobStore, BlobStoreUnavailable, S3BlobStore
from libs.bus import BusUnavailable
from libs.db import DatabaseUnavailable
from libs.metrics import HTTP_LATENCY, HTTP_REQUESTS
from libs.settings import Settings
from services.ingest import jobs
from services.ingest.errors import ApiError, not_found
from services.ingest.fetch import SafeAudioFetcher, callback_validator
from services.ingest.form import parse_submit_form
from services.ingest.lookup import LookupQueries
from services.ingest.status import status_body
from services.ingest.submit import SubmitContext, submit

log = structlog.get_logger()

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", BlobStore)
NATS_CLIENT = web.AppKey("nats", NATS)
SUBMIT_CTX = web.AppKey("submit_ctx", SubmitContext)
API_KEY = web.RequestKey("api_key", apikeys.ApiKey)
TRACE_ID = web.RequestKey("trace_id", str)

FORMATS = {
    "json": ("b2_transcript_json_key", "application/json"),
    "txt": ("b2_transcript_txt_key", "text/plain; charset=utf-8"),
    "srt": ("b2_transcript_srt_key", "application/x-subrip"),
    "vtt": ("b2_transcript_vtt_key", "text/vtt; charset=utf-8"),
}
READY_TIMEOUT = 3.0


def _error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


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
        except db.UNAVAILABLE as exc:
            status = 503
            log.warning("dependency_unavailable", dependency="postgres", error=str(exc))
            return _error(
                503,
                "database_unavailable",
                "Postgres is unavailable, retry later",
                {"Retry-After": "5"},
            )
        except BlobStoreUnavailable as exc:
            status = 503
            log.warning("dependency_unavailable", dependency="s3", error=str(exc))
            return _error(
                503,
                "storage_unavailable",
                "object storage is unavailable, retry later",
                {"Retry-After": "5"},
            )
        except BusUnavailable as exc:
            status = 503
            log.warning("dependency_unavailable", dependency="nats", error=str(exc))
            return _error(
                503, "bus_unavailable", "NATS is unavailable, retry later", {"Retry-After": "5"}
            )
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


async def authenticate(request: web.Request) -> apikeys.ApiKey:
    raw = request.headers.get("X-API-Key", "")
    if not raw:
        raise ApiError(401, "missing_api_key", "send your key in the X-API-Key header")
    try:
        key = await apikeys.authenticate(request.app[POOL], raw)
    except db.CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    if key is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid")
    request[API_KEY] = key
    structlog.contextvars.bind_contextvars(api_key=key.key_hint)
    return key


def _job_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["audio_file_id"])
    except ValueError:
        raise not_found("no such job") from None


async def post_transcribe(request: web.Request) -> web.Response:
    key = await authenticate(request)
    settings = request.app[SETTINGS]
    form = await parse_submit_form(
        request, max_upload_bytes=settings.max_upload_bytes, spool_dir=None
    )
    try:
        accepted = await submit(
            request.app[SUBMIT_CTX],
            key,
            form,
            idempotency_key=request.headers.get("Idempotency-Key"),
            trace_id=request[TRACE_ID],
        )
    finally:
        if form.upload:
            form.upload.discard()
    return web.json_response(accepted.body())


async def get_status(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await db.fetchrow(request.app[POOL], jobs.STATUS, _job_id(request), uuid.UUID(key.id))
    if row is None:
        raise not_found("no such job")
    return web.json_response(status_body(row))


async def post_rerun(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    row = await db.fetchrow(pool, jobs.FIND_FOR_KEY, _job_id(request), uuid.UUID(key.id))
    if row is None:
        raise not_found("no such job")
    try:
        async with pool.acquire() as conn:
            await jobs.requeue(conn, row, trace_id=request[TRACE_ID])
    except db.CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return web.json_response({"audio_file_id": str(row["id"]), "status": "QUEUED"})


async def get_transcript(request: web.Request) -> web.Response:
    key = await authenticate(request)
    fmt = request.match_info.get("fmt") or request.query.get("format", "txt")
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_format", f"format must be one of {sorted(FORMATS)}")
    row = await db.fetchrow(request.app[POOL], jobs.STATUS, _job_id(request), uuid.UUID(key.id))
    if row is None:
        raise not_found("no such job")
    column, content_type = FORMATS[fmt]
    object_key = row[column] if row["status"] == "completed" else None
    if not object_key:
        raise ApiError(409, "not_completed", "the transcript is not ready yet")
    try:
        data = await request.app[STORE].get_bytes(object_key)
    except BlobNotFound:
        raise not_found("the transcript object is missing from storage") from None
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{row["id"]}.{fmt}"',
        },
    )


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app

    async def check_pg() -> None:
        await app[POOL].fetchval("SELECT 1")

    async def check_nats() -> None:
        nc = app[NATS_CLIENT]
        if not nc.is_connected:
            raise BusUnavailable("not connected")
        await nc.jetstream().account_info()

    async def check_s3() -> None:
        await app[STORE].ping()

    checks = {"postgres": check_pg, "nats": check_nats, "s3": check_s3}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=READY_TIMEOUT)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            results[name] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in results.values())
    return web.json_response(
        {"status": "ready" if ok else "unavailable", "checks": results},
        status=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


async def metrics(_: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    store: BlobStore | None = None,
    nc: NATS | None = None,
) -> web.Application:
    """Build the app. Clients not passed in are opened on startup and closed on cleanup."""
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
            fetcher = await stack.enter_async_context(SafeAudioFetcher.open_client(settings))
            app[SUBMIT_CTX] = SubmitContext(
                pool=app[POOL],
                store=app[STORE],
                fetcher=fetcher,
                queries=LookupQueries(),
                default_phone_region=settings.default_phone_region,
                validate_callback=callback_validator(settings),
            )
            yield

    app.cleanup_ctx.append(clients)
    app.router.add_post("/api/media/transcribe", post_transcribe)
    app.router.add_get("/api/media/status/{audio_file_id}", get_status)
    app.router.add_post("/api/media/rerun/{audio_file_id}", post_rerun)
    app.router.add_get("/api/media/transcript/{audio_file_id}.{fmt}", get_transcript)
    app.router.add_get("/api/media/transcript/{audio_file_id}", get_transcript)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
