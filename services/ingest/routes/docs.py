"""`/openapi.json` and `/docs`: Swagger UI served from the swagger-ui-bundle wheel (no CDN, so
the docs work on an air-gapped host)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from libs.errors import NotFound
from services.ingest import openapi
from services.ingest.openapi import ApiRoutes, Reply, in_path

SPEC = web.AppKey("openapi_spec", dict[str, Any])
# The document encoded once: served as a file is, not rebuilt per request.
SPEC_JSON = web.AppKey("openapi_json", bytes)
# Only the files the page loads; everything else in the package directory stays private.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui-standalone-preset.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
ROUTES = ApiRoutes("docs")
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Transcription gateway API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
"""


def _assets_dir() -> Path:
    import swagger_ui_bundle  # type: ignore[import-untyped]

    return Path(swagger_ui_bundle.swagger_ui_path)


async def _build_spec(app: web.Application) -> None:
    # At startup every route module has registered its routes, and the app takes state still.
    app[SPEC] = openapi.build(app)
    app[SPEC_JSON] = json.dumps(app[SPEC]).encode()


@ROUTES.get(
    "/openapi.json",
    operation_id="openapi",
    summary="This document",
    authenticated=False,
    responses={200: Reply("OpenAPI 3.0 document", media={"application/json": {"type": "object"}})},
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC_JSON], content_type="application/json")


@ROUTES.get(
    "/docs",
    operation_id="docs",
    summary="Interactive documentation (Swagger UI, served offline)",
    authenticated=False,
    responses={200: Reply("HTML page", media={"text/html": {"type": "string"}})},
)
async def docs_page(_: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@ROUTES.get(
    "/docs/{asset}",
    operation_id="docsAsset",
    summary="Swagger UI assets",
    authenticated=False,
    params=[in_path("asset", "file name of the asset", {"type": "string", "enum": sorted(ASSETS)})],
    responses={
        200: Reply(
            "the asset",
            media={
                media: {"type": "string", "format": "binary"}
                for media in sorted(set(ASSETS.values()))
            },
        ),
        404: "not one of the assets",
    },
)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFound("not one of the Swagger UI assets")
    return web.FileResponse(_assets_dir() / name, headers={"Content-Type": content_type})


def register(app: web.Application) -> None:
    app.on_startup.append(_build_spec)
    ROUTES.register(app)
