"""Every webhook route is described for /openapi.json (routes/<module>.OPENAPI)."""

from __future__ import annotations

from aiohttp import web

from services.ingest.routes import webhooks


def test_every_route_is_documented_and_nothing_else() -> None:
    app = web.Application()
    webhooks.register(app)
    registered = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(path, m) for path, ops in webhooks.OPENAPI.items() for m in ops}
    assert registered == documented
    for ops in webhooks.OPENAPI.values():
        for op in ops.values():
            assert op["summary"] and "401" in op["responses"]
