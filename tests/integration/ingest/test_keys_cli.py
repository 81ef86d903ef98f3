"""`transcribe keys create`: a webhook URL is checked exactly as the API checks it (SSRF policy,
SSRF_ALLOWLIST), every key is printed with its signing secret, and TRANSCRIBE_HOME alone finds
the embedded stack's database (as the other operator commands do)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from libs.apikeys import endpoints
from libs.provision import migrate_database
from libs.settings import Settings
from tests.integration.ingest.conftest import Api, make_key

pytestmark = pytest.mark.integration


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _cli(env, "keys", *args)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "transcribe"), "--log-format", "console", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        timeout=60,
        check=False,
    )


def _create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    # Tenant keys need a prefix (tenants are isolated by default).
    scope = () if "--prefix" in args else ("--prefix", name)
    return _keys(env, "create", "--name", name, *scope, *args)


PRIVATE = [
    "http://127.0.0.1:9/hook",
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://localhost:8080/hook",
    "ftp://hooks.example.com/hook",
    "http://user:pw@hooks.example.com/hook",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_webhook_urls_the_api_refuses_are_refused(
    api: Api, ingest_settings: Settings, url: str
) -> None:
    # The API's verdict on the same URL with the same allowlist: PUT /api/webhooks/endpoint.
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request("PUT", "/api/webhooks/endpoint", key=raw, json={"url": url})
    assert status == 400 and body["error"].startswith("url_"), body
    env = {
        "DATABASE_URL": ingest_settings.require_database_url(),
        "SSRF_ALLOWLIST": ingest_settings.ssrf_allowlist,
    }
    result = _create(env, "--webhook-url", url)
    assert result.returncode == 2, result.stdout
    assert f"cannot create the key: {body['detail']}" in result.stderr


async def test_an_allowlisted_private_url_is_accepted(api: Api, ingest_settings: Settings) -> None:
    url = "http://127.0.0.1:9/hook"
    env = {"DATABASE_URL": ingest_settings.require_database_url(), "SSRF_ALLOWLIST": "127.0.0.1:9"}
    result = _create(env, "--webhook-url", url)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["webhook_url"] == url and out["webhook_secret"].startswith("whsec_")
    # The same allowlist entry does not open other ports.
    assert _create(env, "--webhook-url", "http://127.0.0.1:10/hook").returncode == 2


async def test_a_key_without_a_webhook_url_is_printed_with_its_secret(
    api: Api, ingest_settings: Settings
) -> None:
    result = _create({"DATABASE_URL": ingest_settings.require_database_url()})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["webhook_url"] is None
    stored = await api.pool.fetchval(
        "SELECT webhook_secret FROM media_pipeline.api_keys WHERE id = $1", uuid.UUID(out["id"])
    )
    assert out["webhook_secret"] == stored and stored.startswith("whsec_")
    state = await endpoints.get(api.pool, uuid.UUID(out["id"]))
    assert state is not None and state["signed"] is True


async def test_transcribe_home_alone_finds_the_embedded_database(
    postgres_server: Any, tmp_path: Path
) -> None:
    # A TRANSCRIBE_HOME as `transcribe up` leaves it: its Postgres records its port there.
    await migrate_database(postgres_server.dsn)
    home = tmp_path / "home"
    (home / "postgres").mkdir(parents=True)
    (home / "postgres" / "ports.json").write_text(json.dumps({"postgres": postgres_server.port}))
    env = {"TRANSCRIBE_HOME": str(home)}
    created = _create(env, "--prefix", "homeonly")
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    listed = _keys(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert out["id"] in [k["id"] for k in json.loads(listed.stdout)]
    # The secret shown at creation is replaced through the webhooks CLI, from the same home.
    rotated = _cli(env, "webhooks", "rotate-secret", "--key", out["id"])
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["webhook_secret"]
    assert new_secret.startswith("whsec_") and new_secret != out["webhook_secret"]
    revoked = _keys(env, "revoke", out["id"])
    assert revoked.returncode == 0, revoked.stderr
    # Without a home holding a stack, and no DATABASE_URL, it says what is missing.
    missing = _keys({"TRANSCRIBE_HOME": str(tmp_path / "nothing")}, "list")
    assert missing.returncode != 0


async def test_keys_carry_a_tenant_redaction_policy(api: Api, ingest_settings: Settings) -> None:
    env = {"DATABASE_URL": ingest_settings.require_database_url()}
    result = _create(env, "--redact", "pci", "--redact-substitution", "last4")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["redact"] == "credit_card,cvv,expiry;substitution=last4;keep=redacted"
    # Switched on (or changed) later for an existing tenant, by id or hint.
    result = _keys(env, "redact", created["hint"], "--redact", "pii")
    assert result.returncode == 0, result.stderr
    listed = {k["id"]: k for k in json.loads(_keys(env, "list").stdout)}
    assert listed[created["id"]]["redact"].startswith("credit_card,cvv,dob,email,expiry,phone,ssn;")
    for bad in (("--redact", "pci,visa"), ("--redact-keep", "both")):
        result = _keys(env, "redact", created["hint"], *bad)
        assert result.returncode == 2, result.stdout
        assert "cannot set the policy" in result.stderr
    assert _keys(env, "redact", "no-such-key", "--redact", "pci").returncode == 1
    result = _create(env, "--redact", "pci\x1b[2J")
    assert result.returncode == 2 and "\x1b" not in result.stderr
