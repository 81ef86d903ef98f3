"""The console's authentication and authorization under attack: concurrent guessing, revoked
keys, foreign tenants, self-lockout (services/ingest/access.py, context.py, routes/users.py,
libs/users)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from libs import apikeys
from services.ingest import access
from services.ingest.routes import ROUTE_MODULES
from tests.integration.ingest.conftest import Api, Upstream, bootstrap_key_id, make_key
from tests.integration.ingest.console.conftest import Browser, Clock, make_user

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clock() -> Clock:
    """A time of this module's own: its failed logins from 127.0.0.1 never count against the
    other console modules' (same database, same address)."""
    return Clock(at=datetime(2300, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module", autouse=True)
async def forget_attempts(console: Api) -> AsyncIterator[None]:
    """The failures counted here lie in the future of the other modules' clocks, where they
    would count: removed when the module is done."""
    yield
    await console.pool.execute(
        "DELETE FROM media_pipeline.console_login_attempts WHERE attempted_at >= $1",
        datetime(2300, 1, 1, tzinfo=UTC),
    )


async def test_concurrent_guesses_do_not_pass_the_login_limit(console: Api) -> None:
    """Guesses sent all at once are counted like guesses sent one by one: no more than the
    limit get as far as the password check."""
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    limit = console.settings.console_login_attempts
    answers = await asyncio.gather(
        *(Browser(console).login(user.email, f"guess number {i}") for i in range(limit * 3))
    )
    statuses = [status for status, _, _ in answers]
    assert statuses.count(401) <= limit, statuses
    assert statuses.count(429) >= limit * 2, statuses


async def test_a_user_whose_key_was_revoked_cannot_log_in(console: Api) -> None:
    """Revoking a key ends its users' sessions and their logins: the same refusal as a wrong
    password (no session is opened, nothing says the password was right)."""
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id, role="admin")
    browser = Browser(console)
    status, _, _ = await browser.login(user.email)
    assert status == 200
    async with console.pool.acquire() as conn:
        assert await apikeys.revoke(conn, key.id)
    status, body, _ = await browser.call("GET", "/api/session")
    assert (status, body["error"]) == (401, "session_expired")
    status, body, headers = await Browser(console).login(user.email)
    assert (status, body["error"]) == (401, "invalid_credentials"), body
    assert "Set-Cookie" not in headers
    opened = await console.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.console_sessions WHERE user_id = $1 "
        "AND ended_at IS NULL",
        uuid.UUID(user.id),
    )
    assert opened == 1  # only the first login's, which no request can use any more


async def _job(api: Api, upstream: Upstream, key: str) -> str:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"}
    status, body, _ = await api.submit(data, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _logged_in(api: Api, **user: Any) -> Browser:
    browser = Browser(api)
    status, body, _ = await browser.login((await make_user(api, **user)).email)
    assert status == 200, body
    return browser


async def test_operator_users_read_every_tenant_but_change_none(
    console: Api, upstream: Upstream
) -> None:
    """An operator user acts as the bootstrap key, which reads every tenant's calls; the
    changes stay with the owning key: another tenant's call is 404 to them."""
    raw, _ = await make_key(console.pool)
    theirs = await _job(console, upstream, raw)
    operator = await _logged_in(console, key_id=None, operator=True, role="admin")
    assert (await operator.call("GET", f"/api/media/status/{theirs}"))[0] == 200
    for method, path, body in (
        ("DELETE", f"/api/media/{theirs}", None),
        ("POST", f"/api/media/rerun/{theirs}?force=true", None),
        ("PUT", f"/api/media/{theirs}/speakers", {"names": {}}),
    ):
        status, answer, _ = await operator.call(method, path, json=body)
        assert (status, answer["error"]) == (404, "not_found"), (path, answer)
    status, job, _ = await console.request("GET", f"/api/media/status/{theirs}", key=raw)
    assert status == 200 and job["status"] != "deleted"


def _changing_routes() -> list[tuple[str, str]]:
    app = web.Application()
    for module in ROUTE_MODULES:
        module.register(app)
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in access.SAFE_METHODS:
            continue
        found.add((route.method, resource.canonical))
    found.discard(("POST", "/api/session"))  # login: no session yet (its Origin is checked)
    return sorted(found)


def _concrete(template: str) -> str:
    """A path matching the route template, with a well-formed value for each parameter."""
    values = {"name": "billing", "fmt": "txt"}
    return re.sub(
        r"\{([^}:]+)[^}]*\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), template
    )


async def test_every_change_by_cookie_needs_the_csrf_token_and_our_origin(console: Api) -> None:
    """Every state-changing route registered (those added later too) refuses a cookie request
    without the session's X-CSRF-Token, or with a foreign Origin, before anything else; an
    operator admin, whom the role table lets through everywhere, sends them."""
    routes = _changing_routes()
    assert ("POST", "/api/media/transcribe") in routes and len(routes) > 20
    operator = await _logged_in(console, key_id=None, operator=True, role="admin")
    for method, template in routes:
        path = _concrete(template)
        status, body, _ = await operator.call(method, path, csrf=False, json={})
        assert (status, body["error"]) == (403, "csrf_failed"), (method, template, body)
        status, body, _ = await operator.call(
            method, path, json={}, headers={"Origin": "https://evil.example"}
        )
        assert (status, body["error"]) == (403, "csrf_failed"), (method, template, body)
    # The multipart upload as a cross-site form would send it.
    form = aiohttp.FormData()
    form.add_field("file", b"RIFF", filename="x.wav", content_type="audio/wav")
    status, body, _ = await operator.call("POST", "/api/media/transcribe", csrf=False, data=form)
    assert (status, body["error"]) == (403, "csrf_failed")


async def test_an_admin_cannot_lock_themselves_out(console: Api) -> None:
    """Disabling yourself (or lowering your own role) would end or cut the session doing it,
    and can leave a tenant, or the operator, with no admin to undo it: refused; another admin
    (or `transcribe users`) can."""
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id, role="admin")
    admin = Browser(console)
    await admin.login(user.email)
    mine = f"/api/users/{user.id}"
    for change in ({"disabled": True}, {"role": "viewer"}, {"role": "supervisor"}):
        status, body, _ = await admin.call("PATCH", mine, json=change)
        assert (status, body["error"]) == (409, "own_account"), change
    status, body, _ = await admin.call("PATCH", mine, json={"role": "admin", "disabled": False})
    assert status == 200 and body["role"] == "admin" and body["disabled"] is False
    assert (await admin.call("GET", "/api/users"))[0] == 200  # still logged in, still admin
    # Another admin of the tenant may.
    other = await _logged_in(console, key_id=key.id, role="admin")
    status, body, _ = await other.call("PATCH", mine, json={"disabled": True})
    assert status == 200 and body["disabled"] is True


async def test_no_tenant_user_acts_as_the_operators_key(console: Api) -> None:
    """A user bound to the bootstrap key would read every tenant and manage every tenant's
    notification rules, templates and categories, without being an operator user (and so
    without its checks): the operator's key takes an operator user (`operator: true`)."""
    bootstrap = str(await bootstrap_key_id(console))
    status, body, _ = await console.request(
        "POST",
        "/api/users",
        json={
            "email": f"half-{uuid.uuid4().hex[:8]}@example.org",
            "role": "admin",
            "key": bootstrap,
        },
    )
    assert (status, body["error"]) == (400, "invalid_key"), body
    users = await console.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.console_users WHERE api_key_id = $1",
        uuid.UUID(bootstrap),
    )
    assert users == 0


async def test_call_data_is_kept_by_no_cache(console: Api, upstream: Upstream) -> None:
    """A call's data read with the cookie must not outlive the session in the browser's (a
    shared computer's) cache, nor sit in a proxy: every /api answer is `private, no-store`
    unless its route says otherwise."""
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    viewer = await _logged_in(console, key_id=key.id)
    for path in (
        f"/api/media/status/{job}",
        "/api/media/jobs",
        "/api/media/search?q=card",
        "/api/categories",
    ):
        status, _, headers = await viewer.call("GET", path)
        assert headers.get("Cache-Control") == "private, no-store", (path, status)
        assert headers.get("X-Content-Type-Options") == "nosniff", path
    status, _, headers = await console.request("GET", f"/api/media/transcript/{job}", key=raw)
    assert headers["Cache-Control"] == "private, no-store", status  # an error answer too
    status, _, headers = await console.request("GET", f"/api/media/status/{job}", key=raw)
    assert status == 200 and headers["Cache-Control"] == "private, no-store"
    # Routes with their own policy keep it; the console's pages are not /api.
    _, _, headers = await viewer.call("GET", "/api/session")
    assert headers["Cache-Control"] == "no-store"
    _, _, headers = await viewer.call("GET", "/console/")
    assert headers["Cache-Control"] == "no-cache"


async def test_a_key_and_a_cookie_together_act_as_the_key(console: Api, upstream: Upstream) -> None:
    """X-API-Key wins over the cookie: the key's tenant, no role table, no CSRF token (a page
    of another origin cannot set the header); a bad key is refused, not replaced by the
    cookie."""
    raw_a, key_a = await make_key(console.pool)
    raw_b, _ = await make_key(console.pool)
    job_b = await _job(console, upstream, raw_b)
    viewer_a = await _logged_in(console, key_id=key_a.id)
    status, body, _ = await viewer_a.call("GET", f"/api/media/status/{job_b}")
    assert status == 404
    status, body, _ = await viewer_a.call(
        "GET", f"/api/media/status/{job_b}", headers={"X-API-Key": raw_b}
    )
    assert status == 200, body
    status, body, _ = await viewer_a.call(
        "GET", "/api/media/jobs", headers={"X-API-Key": raw_a + "x"}
    )
    assert (status, body["error"]) == (401, "invalid_api_key")
    status, body, _ = await viewer_a.call(
        "DELETE", f"/api/media/{job_b}", csrf=False, headers={"X-API-Key": raw_b}
    )
    assert status == 200, body
