"""The middleware chain, one concern each, on a bare app: request id, JSON errors, outages
(translated driver errors included), the in-flight limit, the edge checks, 408 closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from libs.db import DatabaseUnavailable
from libs.errors import TimedOut
from services.ingest.middleware import IN_FLIGHT, MIDDLEWARES, InFlight

RELEASE = web.AppKey("release", asyncio.Event)
ENTERED = web.AppKey("entered", asyncio.Event)


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def db_down(_: web.Request) -> web.Response:
    raise DatabaseUnavailable("Postgres unavailable: gone")


async def raw_os_error(_: web.Request) -> web.Response:
    raise ConnectionResetError("reset by peer")


async def slow_body(_: web.Request) -> web.Response:
    raise TimedOut("the body did not arrive in time", code="body_read_timeout")


async def held(request: web.Request) -> web.Response:
    request.app[ENTERED].set()
    await request.app[RELEASE].wait()
    return web.Response(text="done")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=MIDDLEWARES)
    app[IN_FLIGHT] = InFlight(limit=1)
    app[RELEASE], app[ENTERED] = asyncio.Event(), asyncio.Event()
    app.router.add_get("/ok", ok)
    app.router.add_get("/db", db_down)
    app.router.add_get("/raw", raw_os_error)
    app.router.add_get("/slow", slow_body)
    app.router.add_get("/held", held)
    app.router.add_get("/healthz", ok)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_the_request_id_is_echoed_or_replaced(client: TestClient) -> None:
    resp = await client.get("/ok", headers={"X-Request-ID": "abc-1"})
    assert resp.status == 200 and resp.headers["X-Request-ID"] == "abc-1"
    resp = await client.get("/ok", headers={"X-Request-ID": "bad id!"})
    assert resp.headers["X-Request-ID"] != "bad id!"
    resp = await client.get("/nowhere", headers={"X-Request-ID": "abc-2"})
    assert resp.status == 404 and resp.headers["X-Request-ID"] == "abc-2"
    assert await resp.json() == {"error": "not_found", "detail": "no such route"}


async def test_outages_are_503_even_when_the_driver_error_escaped(client: TestClient) -> None:
    for path in ("/db", "/raw"):
        resp = await client.get(path)
        assert resp.status == 503, path
        assert (await resp.json())["error"] == "database_unavailable"
        assert "Retry-After" in resp.headers


async def test_a_408_closes_the_connection(client: TestClient) -> None:
    resp = await client.get("/slow")
    assert resp.status == 408 and resp.headers.get("Connection") == "close"
    assert (await resp.json())["error"] == "body_read_timeout"


async def test_edge_checks_refuse_a_bad_header(client: TestClient) -> None:
    resp = await client.get("/ok", headers={"X-API-Key": "k" * 300})
    assert resp.status == 400 and (await resp.json())["error"] == "header_too_long"


async def test_the_in_flight_limit_spares_health(client: TestClient) -> None:
    app = client.server.app
    first = asyncio.create_task(client.get("/held"))
    await app[ENTERED].wait()
    over = await client.get("/ok")
    assert over.status == 503 and (await over.json())["error"] == "overloaded"
    assert (await client.get("/healthz")).status == 200
    app[RELEASE].set()
    assert (await first).status == 200
    assert app[IN_FLIGHT].count == 0
    assert (await client.get("/ok")).status == 200
