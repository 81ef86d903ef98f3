"""The users admin API: a tenant admin manages their tenant's users only, the operator every
user; disabling and new passwords end sessions (services/ingest/routes/users.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.ingest.conftest import API_KEY, Api, make_key
from tests.integration.ingest.console.conftest import PASSWORD, Browser, make_user

pytestmark = pytest.mark.integration


def _email() -> str:
    return f"new-{uuid.uuid4().hex[:8]}@example.org"


async def test_a_tenant_admin_manages_their_tenant(console: Api) -> None:
    _, key = await make_key(console.pool)
    _, other = await make_key(console.pool)
    admin = Browser(console)
    await admin.login((await make_user(console, key_id=key.id, role="admin")).email)
    outsider = await make_user(console, key_id=other.id)

    email = _email()
    status, body, headers = await admin.call(
        "POST", "/api/users", json={"email": email, "role": "viewer"}
    )
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    created, password = body["user"], body["password"]
    assert created["key_id"] == key.id and created["operator"] is False
    assert len(password) >= 20
    # The generated password logs in.
    viewer = Browser(console)
    assert (await viewer.login(email, password))[0] == 200
    # Same e-mail, other case: taken.
    status, body, _ = await admin.call(
        "POST", "/api/users", json={"email": email.upper(), "role": "viewer", "password": PASSWORD}
    )
    assert (status, body["error"]) == (409, "email_taken")
    for bad, code in (
        ({"email": "no-at-sign", "role": "viewer"}, "invalid_email"),
        ({"email": _email(), "role": "viewer", "password": "short"}, "invalid_password"),
        ({"email": _email(), "role": "viewer", "password": "long enough\x00"}, "invalid_password"),
        ({"email": _email(), "role": "boss"}, "invalid_json"),
    ):
        status, body, _ = await admin.call("POST", "/api/users", json=bad)
        assert (status, body["error"]) == (400, code), bad
    # Another tenant or an operator: not theirs to make.
    for bad in ({"key": other.id}, {"operator": True}):
        status, _, _ = await admin.call(
            "POST", "/api/users", json={"email": _email(), "role": "viewer", **bad}
        )
        assert status == 403

    status, body, _ = await admin.call("GET", "/api/users")
    emails = {u["email"] for u in body["users"]}
    assert email in emails and outsider.email not in emails
    # Another tenant's user is not there.
    for method, path, payload in (
        ("PATCH", f"/api/users/{outsider.id}", {"disabled": True}),
        ("POST", f"/api/users/{outsider.id}/password", {}),
    ):
        assert (await admin.call(method, path, json=payload))[0] == 404

    # Promote, then disable: the viewer's session ends.
    status, body, _ = await admin.call(
        "PATCH", f"/api/users/{created['id']}", json={"role": "supervisor"}
    )
    assert (status, body["role"]) == (200, "supervisor")
    status, me, _ = await viewer.call("GET", "/api/session")
    assert (status, me["user"]["role"]) == (200, "supervisor")  # read at every request
    status, body, _ = await admin.call(
        "PATCH", f"/api/users/{created['id']}", json={"disabled": True}
    )
    assert (status, body["disabled"]) == (200, True)
    assert (await viewer.call("GET", "/api/session"))[0] == 401
    assert (await viewer.login(email, password))[0] == 401
    await admin.call("PATCH", f"/api/users/{created['id']}", json={"disabled": False})
    status, body, _ = await admin.call("POST", f"/api/users/{created['id']}/password", json={})
    assert status == 200 and body["password"]
    assert (await viewer.login(email, body["password"]))[0] == 200
    # Without the CSRF token, nothing changes.
    status, body, _ = await admin.call(
        "PATCH", f"/api/users/{created['id']}", json={"role": "admin"}, csrf=False
    )
    assert (status, body["error"]) == (403, "csrf_failed")
    # A supervisor is no admin.
    assert (await viewer.call("GET", "/api/users"))[0] == 403


async def test_the_operator_manages_every_user(console: Api) -> None:
    _, key = await make_key(console.pool)
    email = _email()
    status, body, _ = await console.request(
        "POST",
        "/api/users",
        key=API_KEY,
        json={"email": email, "role": "admin", "key": key.key_hint, "password": PASSWORD},
    )
    assert status == 200, body
    assert body["user"]["key_id"] == key.id and body["password"] is None
    status, body, _ = await console.request(
        "POST", "/api/users", key=API_KEY, json={"email": _email(), "role": "viewer"}
    )
    assert (status, body["error"]) == (400, "invalid_key")
    status, body, _ = await console.request(
        "POST",
        "/api/users",
        key=API_KEY,
        json={"email": _email(), "role": "admin", "operator": True, "password": PASSWORD},
    )
    assert status == 200 and body["user"]["operator"] is True
    operator = Browser(console)
    assert (await operator.login(body["user"]["email"]))[0] == 200
    status, listed, _ = await operator.call("GET", "/api/users")
    assert email in {u["email"] for u in listed["users"]}
    # A tenant key is its tenant's admin: it sees its own user, not the operator's.
    raw, mine = await make_key(console.pool)
    await make_user(console, key_id=mine.id)
    status, listed, _ = await console.request("GET", "/api/users", key=raw)
    assert status == 200 and [u["key_id"] for u in listed["users"]] == [mine.id]
