"""`/openapi.json` and `/docs`: Swagger UI served from the swagger-ui-bundle wheel (no CDN, so
the docs work on an air-gapped host)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.ingest import openapi

SPEC = web.AppKey("openapi_spec", dict[str, Any])
# Only the files the page loads; everything else in the package directory stays private.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui-standalone-preset.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
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
    from services.ingest.routes import ROUTE_MODULES

    app[SPEC] = openapi.build(app, ROUTE_MODULES)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


async def docs_page(_: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(_assets_dir() / name, headers={"Content-Type": content_type})


def register(app: web.Application) -> None:
    app.on_startup.append(_build_spec)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/{asset}", docs_asset)
