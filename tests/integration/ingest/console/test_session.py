"""The console's session over the API: login, me, logout, expiry, rate limits, CSRF, roles
and tenants (services/ingest/routes/session.py, services/ingest/access.py, libs/users)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.ingest.console.conftest import PASSWORD, Browser, Clock, make_user

pytestmark = pytest.mark.integration


async def _job(api: Api, upstream: Upstream, key: str) -> str:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"}
    status, body, _ = await api.submit(data, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def test_login_me_and_logout(console: Api, upstream: Upstream) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    user = await make_user(console, key_id=key.id, role="supervisor")
    browser = Browser(console)
    # The e-mail matches in any case.
    status, body, headers = await browser.login(user.email.upper())
    assert status == 200, body
    assert body["user"] == {
        "id": user.id,
        "email": user.email,
        "role": "supervisor",
        "tenant": key.tenant_prefix,
        "operator": False,
    }
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("tg_session=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert "Secure" not in cookie  # PUBLIC_BASE_URL is http here
    assert headers["Cache-Control"] == "no-store"
    # Only the hash of the token is stored.
    stored = await console.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.console_sessions WHERE token_hash = $1", browser.token
    )
    assert stored == 0

    status, me, _ = await browser.call("GET", "/api/session")
    assert status == 200 and me["user"] == body["user"] and me["csrf_token"] == browser.csrf
    # The cookie works as the user's key: the key's own job is there.
    status, page, _ = await browser.call("GET", "/api/media/jobs")
    assert status == 200
    assert [j["metadata"]["audio_file_id"] for j in page["jobs"]] == [job]
    status, _, _ = await browser.call("GET", f"/api/media/status/{job}")
    assert status == 200

    status, _, headers = await browser.call("DELETE", "/api/session")
    assert status == 204
    assert 'tg_session=""' in headers["Set-Cookie"] or "Max-Age=0" in headers["Set-Cookie"]
    # The session ended on the server: the old cookie opens nothing.
    for method, path in (("GET", "/api/session"), ("GET", "/api/media/jobs")):
        status, err, _ = await browser.call(method, path)
        assert (status, err["error"]) == (401, "session_expired")


async def test_unknown_email_wrong_password_and_disabled_user_look_the_same(
    console: Api, clock: Clock
) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    disabled = await make_user(console, key_id=key.id)
    async with console.pool.acquire() as conn:
        from libs.users import accounts

        await accounts.update(conn, uuid.UUID(disabled.id), disabled=True, now=clock())
    answers = []
    for email, password in (
        (user.email, "not the password"),
        (f"nobody-{uuid.uuid4().hex}@example.org", PASSWORD),
        (disabled.email, PASSWORD),
        ("not an e-mail", PASSWORD),
        # Postgres text holds no NUL: the attempt is still counted, the answer the same.
        (f"{user.email}\x00", PASSWORD),
        ("\x00", PASSWORD),
    ):
        status, body, _ = await Browser(console).login(email, password)
        answers.append((status, body))
    refused = {"error": "invalid_credentials", "detail": "the e-mail or the password is wrong"}
    assert answers == [(401, refused)] * 6


async def test_failed_logins_are_rate_limited_per_account(console: Api, clock: Clock) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    limit = console.settings.console_login_attempts
    for _ in range(limit):
        status, _, _ = await Browser(console).login(user.email, "wrong password!")
        assert status == 401
        clock.advance(seconds=1)
    # Over the limit even the right password is refused, with when to come back.
    status, body, headers = await Browser(console).login(user.email)
    assert (status, body["error"]) == (429, "rate_limited")
    window = console.settings.console_login_window_minutes * 60
    assert 0 < int(headers["Retry-After"]) <= window
    clock.advance(seconds=int(headers["Retry-After"]))
    status, _, _ = await Browser(console).login(user.email)
    assert status == 200


async def test_failed_logins_are_rate_limited_per_address(console: Api) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    for _ in range(console.settings.console_login_attempts):
        status, _, _ = await Browser(console).login(f"x{uuid.uuid4().hex}@example.org")
        assert status == 401
    # Another account, the same address: refused too.
    status, body, _ = await Browser(console).login(user.email)
    assert (status, body["error"]) == (429, "rate_limited")


async def test_login_makes_a_new_session_and_ends_the_previous_one(console: Api) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    browser = Browser(console)
    await browser.login(user.email)
    first = browser.token
    status, _, _ = await browser.login(user.email)  # the first cookie is sent along
    assert status == 200 and browser.token != first
    stale = Browser(console, token=first)
    status, _, _ = await stale.call("GET", "/api/session")
    assert status == 401
    # A token the server never issued is never adopted: login answers a fresh one.
    planted = Browser(console, token="planted-by-an-attacker")
    await planted.login(user.email)
    assert planted.token != "planted-by-an-attacker"


async def test_idle_and_absolute_expiry(console: Api, clock: Clock) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    idle = console.settings.console_idle_minutes
    browser = Browser(console)
    await browser.login(user.email)
    clock.advance(minutes=idle - 1)
    assert (await browser.call("GET", "/api/session"))[0] == 200
    # Use keeps it alive past the first idle period...
    clock.advance(minutes=idle - 1)
    assert (await browser.call("GET", "/api/session"))[0] == 200
    # ...idleness ends it.
    clock.advance(minutes=idle + 1)
    status, body, _ = await browser.call("GET", "/api/session")
    assert (status, body["error"]) == (401, "session_expired")

    # The absolute limit ends even a session in constant use.
    await browser.login(user.email)
    hours = console.settings.console_session_hours
    used = 0.0
    while used + idle / 2 < hours * 60:
        clock.advance(minutes=idle / 2)
        used += idle / 2
        assert (await browser.call("GET", "/api/session"))[0] == 200
    clock.advance(minutes=hours * 60 - used + 1)
    assert (await browser.call("GET", "/api/session"))[0] == 401


async def test_csrf_token_and_origin_are_required_for_changes(
    console: Api, upstream: Upstream
) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    user = await make_user(console, key_id=key.id, role="supervisor")
    browser = Browser(console)
    await browser.login(user.email)
    rerun = f"/api/media/rerun/{job}?force=true"
    status, body, _ = await browser.call("POST", rerun, csrf=False)
    assert (status, body["error"]) == (403, "csrf_failed")
    status, body, _ = await browser.call("POST", rerun, headers={"X-CSRF-Token": "A" * 43})
    assert (status, body["error"]) == (403, "csrf_failed")
    for origin in ("https://evil.example", "null"):
        status, body, _ = await browser.call("POST", rerun, headers={"Origin": origin})
        assert (status, body["error"]) == (403, "csrf_failed"), origin
    # No Origin: the Referer decides; neither: refused.
    status, body, _ = await browser.call(
        "POST", rerun, headers={"Origin": "", "Referer": "https://evil.example/page"}
    )
    assert (status, body["error"]) == (403, "csrf_failed")
    status, body, _ = await browser.call(
        "POST", rerun, headers={"Origin": "", "Referer": f"{console.base_url}/console/"}
    )
    assert status == 200, body
    status, body, _ = await browser.call("POST", rerun)
    assert status == 200, body
    # Logout is a change too.
    status, body, _ = await browser.call("DELETE", "/api/session", csrf=False)
    assert (status, body["error"]) == (403, "csrf_failed")
    # Login from a foreign page is refused.
    status, body, _ = await Browser(console, origin="https://evil.example").login(user.email)
    assert (status, body["error"]) == (403, "csrf_failed")
    # X-API-Key requests are unchanged: no CSRF token, no Origin.
    status, _, _ = await console.request("POST", rerun, key=raw)
    assert status == 200


async def test_roles_decide_what_a_user_may_do(console: Api, upstream: Upstream) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    viewer = Browser(console)
    await viewer.login((await make_user(console, key_id=key.id, role="viewer")).email)
    assert (await viewer.call("GET", f"/api/media/status/{job}"))[0] == 200
    for method, path in (
        ("DELETE", f"/api/media/{job}"),
        ("POST", f"/api/media/rerun/{job}?force=true"),
        ("GET", "/api/webhooks/endpoint"),
        ("GET", "/api/ops/dead-letters"),
    ):
        status, body, _ = await viewer.call(method, path)
        assert (status, body["error"]) == (403, "insufficient_role"), path
    supervisor = Browser(console)
    await supervisor.login((await make_user(console, key_id=key.id, role="supervisor")).email)
    assert (await supervisor.call("GET", "/api/webhooks/endpoint"))[0] == 403
    admin = Browser(console)
    await admin.login((await make_user(console, key_id=key.id, role="admin")).email)
    assert (await admin.call("GET", "/api/webhooks/endpoint"))[0] == 200
    assert (await admin.call("GET", "/api/ops/dead-letters"))[0] == 403
    assert (await supervisor.call("DELETE", f"/api/media/{job}"))[0] == 200
    operator = Browser(console)
    await operator.login((await make_user(console, key_id=None, operator=True, role="admin")).email)
    status, me, _ = await operator.call("GET", "/api/session")
    assert me["user"]["operator"] is True and me["user"]["tenant"] == ""
    assert (await operator.call("GET", "/api/ops/dead-letters"))[0] == 200


async def test_a_user_sees_only_their_tenant(console: Api, upstream: Upstream) -> None:
    raw_b, _ = await make_key(console.pool)
    theirs = await _job(console, upstream, raw_b)
    _, key_a = await make_key(console.pool)
    browser = Browser(console)
    await browser.login((await make_user(console, key_id=key_a.id, role="admin")).email)
    for path in (f"/api/media/status/{theirs}", f"/api/media/transcript/{theirs}.txt"):
        status, _, _ = await browser.call("GET", path)
        assert status == 404, path
    status, page, _ = await browser.call("GET", "/api/media/jobs")
    assert page["jobs"] == []
    assert (await browser.call("DELETE", f"/api/media/{theirs}"))[0] == 404


async def test_disabling_or_a_new_password_ends_the_sessions(console: Api, clock: Clock) -> None:
    from libs.users import accounts

    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    browser = Browser(console)
    await browser.login(user.email)
    async with console.pool.acquire() as conn:
        await accounts.set_password(conn, uuid.UUID(user.id), "another password!", now=clock())
    assert (await browser.call("GET", "/api/session"))[0] == 401
    assert (await browser.login(user.email))[0] == 401
    assert (await browser.login(user.email, "another password!"))[0] == 200
    async with console.pool.acquire() as conn:
        await accounts.update(conn, uuid.UUID(user.id), disabled=True, now=clock())
    assert (await browser.call("GET", "/api/session"))[0] == 401


async def test_passwords_are_stored_as_argon2id(console: Api) -> None:
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    stored = await console.pool.fetchval(
        "SELECT password_hash FROM media_pipeline.console_users WHERE id = $1", uuid.UUID(user.id)
    )
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored


async def test_old_sessions_and_attempts_are_purged(console: Api, clock: Clock) -> None:
    from libs import users

    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    browser = Browser(console)
    await Browser(console).login(user.email, "wrong password!")
    await browser.login(user.email)
    await browser.call("DELETE", "/api/session")
    live = Browser(console)
    await live.login(user.email)

    async def counts() -> tuple[int, int]:
        sessions = await console.pool.fetchval(
            "SELECT count(*) FROM media_pipeline.console_sessions WHERE user_id = $1",
            uuid.UUID(user.id),
        )
        tried = await console.pool.fetchval(
            "SELECT count(*) FROM media_pipeline.console_login_attempts WHERE email_norm = $1",
            user.email.lower(),
        )
        return sessions, tried

    assert await counts() == (2, 3)
    await users.purge(console.pool, now=clock())
    assert await counts() == (2, 3)  # nothing old enough yet
    clock.advance(days=1, hours=2)
    await users.purge(console.pool, now=clock())
    # The ended session and every attempt are gone; the other session's row stays until its
    # absolute expiry is a day old.
    assert await counts() == (1, 0)
    clock.advance(hours=console.settings.console_session_hours)
    await users.purge(console.pool, now=clock())
    assert await counts() == (0, 0)
