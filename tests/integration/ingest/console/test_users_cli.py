"""`transcribe users ...` against the real database: create (password from stdin, or
generated and printed once), list, disable, enable, reset-password; the console login works
with what the CLI set."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from libs.settings import Settings
from tests.integration.ingest.conftest import Api, make_key
from tests.integration.ingest.console.conftest import Browser

pytestmark = pytest.mark.integration


def _users(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "transcribe"),
            "--log-format",
            "console",
            "users",
            *args,
        ],
        capture_output=True,
        text=True,
        input=stdin if stdin is not None else "",
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "DATABASE_URL": settings.require_database_url(),
        },
        timeout=60,
        check=False,
    )


async def test_create_list_disable_and_reset(console: Api, ingest_settings: Settings) -> None:
    _, key = await make_key(console.pool)
    email = f"cli-{uuid.uuid4().hex[:8]}@Example.org"
    done = _users(
        ingest_settings,
        "create",
        "--email",
        email,
        "--role",
        "supervisor",
        "--key",
        key.key_hint,
        "--password-stdin",
        stdin="a password from stdin\n",
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["key_id"] == key.id and created["role"] == "supervisor"
    assert "password" not in created
    browser = Browser(console)
    assert (await browser.login(email.lower(), "a password from stdin"))[0] == 200

    # Without --password-stdin and without a terminal: generated, printed once.
    other = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    done = _users(ingest_settings, "create", "--email", other, "--role", "admin", "--operator")
    assert done.returncode == 0, done.stderr
    generated = json.loads(done.stdout)
    assert generated["operator"] is True and len(generated["password"]) >= 20
    assert (await Browser(console).login(other, generated["password"]))[0] == 200

    listed = json.loads(_users(ingest_settings, "list").stdout)
    assert {email, other} <= {u["email"] for u in listed}
    assert not any("password" in u for u in listed)

    done = _users(ingest_settings, "disable", email)
    assert done.returncode == 0 and json.loads(done.stdout)["disabled"] is True
    assert (await browser.call("GET", "/api/session"))[0] == 401
    assert _users(ingest_settings, "enable", created["id"]).returncode == 0
    done = _users(
        ingest_settings, "reset-password", email, "--password-stdin", stdin="brand new password\n"
    )
    assert done.returncode == 0, done.stderr
    assert (await Browser(console).login(email, "a password from stdin"))[0] == 401
    assert (await Browser(console).login(email, "brand new password"))[0] == 200


async def test_refusals(console: Api, ingest_settings: Settings) -> None:
    base = ("create", "--email", f"x-{uuid.uuid4().hex[:8]}@example.org", "--role", "viewer")
    done = _users(
        ingest_settings, *base, "--key", "no-such-key", "--password-stdin", stdin="long enough pw\n"
    )
    assert done.returncode == 1 and "no active key" in done.stderr
    done = _users(ingest_settings, *base, "--operator", "--password-stdin", stdin="short\n")
    assert done.returncode == 2 and "10 to 1024" in done.stderr
    done = _users(ingest_settings, "create", "--email", "x@example.org", "--role", "viewer")
    assert done.returncode == 2  # --key or --operator is required
    assert _users(ingest_settings, "disable", "nobody@example.org").returncode == 1
