"""The OpenAPI builder lists every registered route, documented or not."""

from __future__ import annotations

import types

from aiohttp import web
from openapi_spec_validator import validate

from services.ingest import openapi


async def undocumented_handler(request: web.Request) -> web.Response:
    """Frobnicate a widget.

    Longer explanation."""
    return web.Response()


def test_undocumented_routes_still_appear_with_their_docstring() -> None:
    app = web.Application()
    app.router.add_get("/healthz", undocumented_handler)
    app.router.add_post("/api/things/{thing_id}/frob", undocumented_handler)
    spec = openapi.build(app, [])
    validate(spec)  # type: ignore[arg-type]
    op = spec["paths"]["/api/things/{thing_id}/frob"]["post"]
    assert op["summary"] == "Frobnicate a widget."
    assert [p["name"] for p in op["parameters"]] == ["thing_id"]
    # A documented path keeps its documentation.
    assert spec["paths"]["/healthz"]["get"]["operationId"] == "healthz"
    assert "head" not in spec["paths"]["/healthz"]


def test_route_modules_can_document_their_operations() -> None:
    module = types.ModuleType("extra")
    module.OPENAPI = {  # type: ignore[attr-defined]
        "/api/extra": {"get": {"summary": "Extra", "responses": {"200": {"description": "ok"}}}}
    }
    app = web.Application()
    app.router.add_get("/api/extra", undocumented_handler)
    spec = openapi.build(app, [module])
    assert spec["paths"]["/api/extra"]["get"]["summary"] == "Extra"
