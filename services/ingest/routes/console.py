"""The web console (docs/console.md): a static single-page app under /console/, built from
console/ into services/ingest/console_assets/ and shipped inside the wheel.

It is only files: every page is index.html (the app routes in the browser), and the app reads
and changes data through the documented /api routes with the user's session, so these routes
need no authentication. index.html carries a strict Content-Security-Policy; a fresh nonce per
answer lets wavesurfer.js's shadow-DOM <style> in (styles only: scripts are 'self', no inline
script, no eval). Hashed asset files are cached for a year."""

from __future__ import annotations

import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from libs.errors import NotFound
from services.ingest.openapi import ApiRoutes, Reply, in_path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "console_assets"
NONCE_PLACEHOLDER = "__CSP_NONCE__"
IMMUTABLE = "public, max-age=31536000, immutable"
ROUTES = ApiRoutes("console")
HTML = {"text/html": {"type": "string"}}
FILE = {"application/octet-stream": {"type": "string", "format": "binary"}}
# Content types of what Vite emits; anything else is served as bytes.
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def content_security_policy(nonce: str) -> str:
    """The console's policy: its own origin only, no inline script, no eval, no framing."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            "media-src 'self' blob:",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """The built console, read once at startup."""

    index: str | None
    assets: dict[str, Asset]

    @classmethod
    def load(cls, root: Path = ASSETS_DIR) -> Bundle:
        index_file = root / "index.html"
        index = index_file.read_text(encoding="utf-8") if index_file.is_file() else None
        assets: dict[str, Asset] = {}
        folder = root / "assets"
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
                    assets[path.name] = Asset(path.read_bytes(), kind or "application/octet-stream")
        return cls(index=index, assets=assets)


BUNDLE = web.AppKey("console_bundle", Bundle)


async def _load(app: web.Application) -> None:
    app[BUNDLE] = Bundle.load()


def _page(request: web.Request) -> web.Response:
    index = request.app[BUNDLE].index
    if index is None:
        raise NotFound("the console is not built (cd console && npm ci && npm run build)")
    nonce = secrets.token_urlsafe(18)
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(nonce),
        "Cache-Control": "no-cache",
    }
    return web.Response(
        text=index.replace(NONCE_PLACEHOLDER, nonce),
        content_type="text/html",
        charset="utf-8",
        headers=headers,
    )


@ROUTES.get(
    "/console",
    summary="The web console (redirects to /console/)",
    authenticated=False,
    responses={
        308: Reply(
            "to /console/",
            media={"text/plain": {"type": "string"}},
            headers={"Location": "/console/"},
        )
    },
)
async def console_root(_: web.Request) -> web.Response:
    return web.Response(status=308, text="/console/\n", headers={"Location": "/console/"})


@ROUTES.get(
    "/console/",
    summary="The web console: calls, search, upload, the call player (docs/console.md)",
    authenticated=False,
    responses={200: Reply("the console's page (a single-page app)", media=HTML)},
)
async def console_index(request: web.Request) -> web.Response:
    return _page(request)


# Registered before the catch-all below: aiohttp matches routes in the order they are added.
@ROUTES.get(
    "/console/assets/{asset}",
    operation_id="consoleAsset",
    summary="The console's scripts and styles (content-hashed names, cached for a year)",
    authenticated=False,
    params=[in_path("asset", "file name of the built asset")],
    responses={200: Reply("the asset", media=FILE), 404: "no such asset"},
)
async def console_asset(request: web.Request) -> web.Response:
    asset = request.app[BUNDLE].assets.get(request.match_info["asset"])
    if asset is None:
        raise NotFound("no such console asset")
    return web.Response(
        body=asset.body,
        headers={
            **SECURITY_HEADERS,
            "Content-Type": asset.content_type,
            "Cache-Control": IMMUTABLE,
        },
    )


@ROUTES.get(
    "/console/{page}",
    operation_id="consolePage",
    summary="Any page of the web console (/console/login, /console/calls/{id}, ...): the same "
    "single-page app, which routes in the browser",
    authenticated=False,
    params=[in_path("page", "the page's path under /console/")],
    responses={
        200: Reply("the console's page", media=HTML),
        404: "a path no page can have (a control character in it)",
    },
)
async def console_page(request: web.Request) -> web.Response:
    return _page(request)


# Documented as /console/{page} (the route's canonical form), matched with slashes too.
CATCH_ALL = ("/console/{page}", "/console/{page:.+}")


def register(app: web.Application) -> None:
    app.on_startup.append(_load)
    for route in ROUTES.routes:
        path = CATCH_ALL[1] if route.path == CATCH_ALL[0] else route.path
        app.router.add_route(route.method, path, route.handler)
