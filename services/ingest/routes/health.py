"""Liveness, readiness (Postgres + NATS + S3) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs.bus import BusUnavailable
from services.ingest.context import NATS_CLIENT, POOL, STORE

READY_TIMEOUT = 3.0


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


def register(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
