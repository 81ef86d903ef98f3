"""Liveness, readiness (Postgres + NATS + S3) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs.bus import BusUnavailable
from services.ingest import bodies
from services.ingest.context import NATS_CLIENT, POOL, STORE
from services.ingest.openapi import ApiRoutes, Reply

READY_TIMEOUT = 3.0
ROUTES = ApiRoutes("health")


@ROUTES.get(
    "/healthz",
    summary="Liveness: the process answers",
    authenticated=False,
    responses={200: Reply("alive", bodies.Alive)},
)
async def healthz(_: web.Request) -> web.Response:
    return bodies.answer(bodies.Alive(status="ok"))


@ROUTES.get(
    "/readyz",
    summary="Readiness: Postgres, NATS and object storage reachable",
    authenticated=False,
    responses={
        200: Reply("ready", bodies.Readiness),
        503: Reply(
            "a dependency is unavailable (named in checks)", bodies.Readiness, retry_after=True
        ),
    },
)
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
    return bodies.answer(
        bodies.Readiness(status="ready" if ok else "unavailable", checks=results),
        status=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


@ROUTES.get(
    "/metrics",
    summary="Prometheus metrics",
    authenticated=False,
    responses={200: Reply("text exposition format", media={"text/plain": {"type": "string"}})},
)
async def metrics(_: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def register(app: web.Application) -> None:
    ROUTES.register(app)
