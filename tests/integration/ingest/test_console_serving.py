"""The web console's files (services/ingest/routes/console.py): every page is the app's
index.html with a strict Content-Security-Policy; hashed assets are cached; nothing is inline."""

from __future__ import annotations

import re

import pytest

from tests.integration.ingest.conftest import Api

pytestmark = pytest.mark.integration


def _policy(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


@pytest.mark.parametrize(
    "path", ["/console/", "/console/login", "/console/calls/3f0c1f9e-0000-4000-8000-000000000000"]
)
async def test_every_page_is_the_app_with_a_strict_policy(api: Api, path: str) -> None:
    async with api.session.get(api.base_url + path) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
        headers = resp.headers
    policy = _policy(headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["media-src"] == ["'self'", "blob:"]
    assert policy["img-src"] == ["'self'", "data:"]
    # Styles: the origin plus this answer's nonce (wavesurfer's shadow-DOM style), never inline.
    (nonce,) = re.findall(r'<meta name="csp-nonce" content="([^"]+)">', page)
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert not any("unsafe" in v for values in policy.values() for v in values)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-cache"
    # No inline script: every <script> loads a file of the console's own.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts
    assert all(body.strip() == "" and 'src="/console/assets/' in attrs for attrs, body in scripts)


async def test_a_fresh_nonce_per_answer(api: Api) -> None:
    nonces = set()
    for _ in range(2):
        async with api.session.get(api.base_url + "/console/") as resp:
            nonces.add(_policy(resp.headers["Content-Security-Policy"])["style-src"][1])
    assert len(nonces) == 2


async def test_assets_are_served_and_cached(api: Api) -> None:
    async with api.session.get(api.base_url + "/console/") as resp:
        page = await resp.text()
    refs = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page)
    assert {r.rsplit(".", 1)[1] for r in refs} == {"js", "css"}
    for ref in refs:
        async with api.session.get(api.base_url + ref) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.content_type == ("text/javascript" if ref.endswith(".js") else "text/css")
            body = await resp.read()
            assert len(body) > 1000
            assert b"http://" not in body.replace(b"http://www.w3.org", b"") or ref.endswith(".css")
    async with api.session.get(api.base_url + "/console/assets/nope.js") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"
    async with api.session.get(
        api.base_url + "/console/assets/..%2F..%2Froutes%2Fconsole.py"
    ) as resp:
        assert resp.status == 404


async def test_console_without_slash_redirects(api: Api) -> None:
    async with api.session.get(api.base_url + "/console", allow_redirects=False) as resp:
        assert resp.status == 308
        assert resp.headers["Location"] == "/console/"
