"""The ingest middleware chain's cost per request, without sockets: an answered GET through
every middleware of services/ingest/middleware.py, against the bare handler.

    .venv/bin/python -m bench.middleware_bench [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from functools import partial
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bench.report import write_results
from services.ingest.middleware import IN_FLIGHT, MIDDLEWARES, Handler, InFlight

# `git show <commit before the split>:services/ingest/app.py > /tmp/old_ingest_app.py`
OLD_APP = Path("/tmp/old_ingest_app.py")


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def chain(handler: Handler) -> Handler:
    for middleware in reversed(MIDDLEWARES):
        handler = partial(middleware, handler=handler)
    return handler


async def per_request_us(handler: Handler, app: web.Application, n: int) -> float:
    """The best of five rounds of n requests (the machine is shared: the minimum is the cost)."""
    request = make_mocked_request("GET", "/ok", app=app)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            await handler(request)
        rounds.append((time.perf_counter() - started) / n * 1e6)
    return min(rounds)


async def main(n: int) -> None:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # logging not measured
    app = web.Application()
    app[IN_FLIGHT] = InFlight(limit=100)
    bare = await per_request_us(ok, app, n)
    full = await per_request_us(chain(ok), app, n)
    print(f"bare handler {bare:.1f} us, through the chain {full:.1f} us: +{full - bare:.1f} us")
    results = {"requests": n, "bare_us": round(bare, 1), "chain_us": round(full, 1)}
    if OLD_APP.exists():
        # The single 68-line middleware it replaced, for comparison (git show ...:app.py).
        spec = importlib.util.spec_from_file_location("old_ingest_app", OLD_APP)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old
        spec.loader.exec_module(old)
        app[old.IN_FLIGHT] = old.InFlight(limit=100)
        single = await per_request_us(partial(old.handle_errors, handler=ok), app, n)
        print(f"the single middleware it replaced: {single:.1f} us")
        results["single_middleware_us"] = round(single, 1)
    write_results(Path("bench/results/middleware.json"), results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
