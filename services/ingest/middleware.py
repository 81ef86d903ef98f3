"""The API's middleware, one concern each, listed outermost first in `MIDDLEWARES`:

1. `assign_request_id`: the request's trace id (X-Request-ID), bound to every log line and
   echoed on the answer
2. `count_request`: Prometheus request count and latency per route
3. `log_request`: one access-log line per request
4. `close_after_timeout`: a 408 closes the connection (the rest of a trickling body is not
   worth reading)
5. `keep_api_private`: an /api answer (an error too) says no cache may keep it (`no-store`)
   unless its route said otherwise: transcripts and call data must not outlive a console
   session in a shared computer's browser cache, nor sit in a proxy's; and `nosniff`, so a
   transcript's words are never taken for a page
6. `answer_errors`: aiohttp's HTTP errors and domain errors as JSON `{error, detail}`
7. `log_outages`: a dependency outage (or a refusal) is logged with its cause
8. `limit_in_flight`: at most INGEST_MAX_CONNECTIONS requests in progress
9. `check_edge`: every header and query value the API reads passes the edge checks
10. `translate_driver_errors`: a raw Postgres connection error that escaped the database
   boundary is still an outage, never a 500
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import structlog
from aiohttp import web

from libs import db
from libs.errors import DomainError, Unavailable
from libs.metrics import HTTP_LATENCY, HTTP_REQUESTS
from services.ingest import edge
from services.ingest.context import TRACE_ID
from services.ingest.errors import ErrorAnswer, answer, json_error, translate_driver_error

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Never refused by the in-flight limit: an overloaded process is still alive and observable.
UNLIMITED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# Headers of aiohttp's own HTTP errors (router 404/405, body too large) kept on the JSON answer.
KEPT_HEADERS = ("Allow", "Retry-After", "Location")


@dataclass(slots=True)
class InFlight:
    """Requests being handled by this process, bounded by INGEST_MAX_CONNECTIONS."""

    limit: int
    count: int = 0


IN_FLIGHT = web.AppKey("in_flight", InFlight)


def route_of(request: web.Request) -> str:
    """The route's template (`/api/media/status/{audio_file_id}`), a bounded metrics label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource else "unmatched"


def status_of(exc: BaseException) -> int:
    """The status a request ends with when its handler raised (500 unless an HTTP answer)."""
    return exc.status if isinstance(exc, web.HTTPException) else 500


async def _timed(
    request: web.Request, handler: Handler, finished: Callable[[int, float], None]
) -> web.StreamResponse:
    """Run `handler`, then `finished(status, seconds)` however it ended (500 for an error that
    is not an HTTP answer)."""
    started, status = time.perf_counter(), 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except BaseException as exc:
        status = status_of(exc)
        raise
    finally:
        finished(status, time.perf_counter() - started)


@web.middleware
async def assign_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    trace_id = edge.request_id(request.headers.get("X-Request-ID"))
    request[TRACE_ID] = trace_id
    with structlog.contextvars.bound_contextvars(trace_id=trace_id):
        response = await handler(request)
    response.headers["X-Request-ID"] = trace_id
    return response


@web.middleware
async def count_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    def count(status: int, seconds: float) -> None:
        route = route_of(request)
        HTTP_REQUESTS.labels(route=route, method=request.method, status=str(status)).inc()
        HTTP_LATENCY.labels(route=route, method=request.method).observe(seconds)

    return await _timed(request, handler, count)


@web.middleware
async def log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    def access_log(status: int, seconds: float) -> None:
        log.info(
            "http_request",
            method=request.method,
            path=request.rel_url.raw_path,  # as sent: percent-encoded, no control bytes
            status=status,
            ms=round(seconds * 1000, 1),
        )

    return await _timed(request, handler, access_log)


@web.middleware
async def close_after_timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status == 408:
        response.force_close()
    return response


def http_error(exc: web.HTTPException) -> ErrorAnswer:
    """aiohttp's own errors (no route, wrong method, body over client_max_size) as JSON."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        code = "method_not_allowed"
        detail = (
            f"{exc.method} is not allowed here; allowed: {', '.join(sorted(exc.allowed_methods))}"
        )
    elif exc.status == 404:
        code, detail = "not_found", "no such route"
    elif exc.status == 413:
        code, detail = "too_large", "the request body is too large"
    else:
        phrase = (
            HTTPStatus(exc.status).phrase if exc.status in HTTPStatus._value2member_map_ else ""
        )
        code = phrase.lower().replace(" ", "_").replace("-", "_") or f"http_{exc.status}"
        detail = exc.reason
    headers = {k: exc.headers[k] for k in KEPT_HEADERS if k in exc.headers}
    return ErrorAnswer(exc.status, code, detail, headers)


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(http_error(exc))
    except DomainError as exc:
        return json_error(answer(exc))


@web.middleware
async def log_outages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Unavailable as exc:
        outage = log.error if exc.refused else log.warning
        outage(
            "dependency_refused" if exc.refused else "dependency_unavailable",
            dependency=exc.dependency,
            error=str(exc),
        )
        raise


@web.middleware
async def limit_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    in_flight = request.app[IN_FLIGHT]
    if not in_flight.limit or route_of(request) in UNLIMITED_ROUTES:
        return await handler(request)
    if in_flight.count >= in_flight.limit:
        raise Unavailable(
            "too many requests in progress, retry shortly", code="overloaded", retry_after=1
        )
    in_flight.count += 1
    try:
        return await handler(request)
    finally:
        in_flight.count -= 1


@web.middleware
async def check_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    edge.check_headers(request.headers)
    edge.check_query(request.rel_url.raw_query_string)
    return await handler(request)


@web.middleware
async def translate_driver_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except db.CONNECTION_ERRORS as exc:
        error = translate_driver_error(exc)
        assert error is not None
        raise error from exc


API_PREFIX = "/api/"
PRIVATE = "private, no-store"


@web.middleware
async def keep_api_private(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith(API_PREFIX) and not response.prepared:
        response.headers.setdefault("Cache-Control", PRIVATE)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


MIDDLEWARES = (
    assign_request_id,
    count_request,
    log_request,
    close_after_timeout,
    keep_api_private,
    answer_errors,
    log_outages,
    limit_in_flight,
    check_edge,
    translate_driver_errors,
)
