"""The bootstrap key follows the environment: API_KEY, WEBHOOK_URL and WEBHOOK_SECRET."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from libs import apikeys, provision
from libs.provision import migrate_database
from libs.settings import Settings
from services.cli.run import cmd_init
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(postgres_server: Any) -> AsyncIterator[asyncpg.Connection]:
    # A database of its own: bootstrap upserts retire every other bootstrap key.
    dsn = await create_database(postgres_server, "keys")
    await migrate_database(dsn)
    c = await asyncpg.connect(dsn)
    yield c
    await c.close()


async def test_a_new_webhook_url_clears_the_old_endpoints_disabled_state(
    conn: asyncpg.Connection,
) -> None:
    key_id = await apikeys.ensure_bootstrap(
        conn, "raw-key", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=None
    )
    await conn.execute(
        "UPDATE media_pipeline.api_keys SET webhook_disabled_at = now(), webhook_disabled_reason = '410 Gone',"
        " webhook_consecutive_failures = 12 WHERE id = $1",
        uuid.UUID(key_id),
    )
    # Same URL on restart: still disabled (its owner must re-enable it deliberately).
    await apikeys.ensure_bootstrap(
        conn, "raw-key", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=None
    )
    key = await apikeys.get(conn, key_id)
    assert key is not None and key.webhook_disabled_at is not None

    # A new URL is a new endpoint.
    await apikeys.ensure_bootstrap(
        conn, "raw-key", tenant_prefix="", webhook_url="https://b.example/hook", webhook_secret=None
    )
    key = await apikeys.get(conn, key_id)
    assert (
        key is not None
        and key.webhook_disabled_at is None
        and key.webhook_url == "https://b.example/hook"
    )
    failures = await conn.fetchval(
        "SELECT webhook_consecutive_failures FROM media_pipeline.api_keys WHERE id = $1",
        uuid.UUID(key_id),
    )
    assert failures == 0


async def test_a_changed_api_key_retires_the_old_one(conn: asyncpg.Connection) -> None:
    await apikeys.ensure_bootstrap(
        conn, "old-key", tenant_prefix="", webhook_url=None, webhook_secret=None
    )
    await apikeys.ensure_bootstrap(
        conn, "new-key", tenant_prefix="", webhook_url=None, webhook_secret=None
    )
    assert await apikeys.authenticate(conn, "old-key") is None
    new = await apikeys.authenticate(conn, "new-key")
    assert new is not None and new.is_bootstrap
    # Only the hash is stored.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM media_pipeline.api_keys WHERE key_hash = 'new-key'"
        )
        == 0
    )


async def test_the_bootstrap_key_without_webhook_secret_gets_one_and_keeps_it(
    conn: asyncpg.Connection,
) -> None:
    # Every webhook is signed: no WEBHOOK_SECRET means a generated secret, kept across starts.
    await apikeys.ensure_bootstrap(
        conn, "boot", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=None
    )
    first = await apikeys.bootstrap_secret(conn, "boot")
    assert first is not None and first.startswith("whsec_")
    await apikeys.ensure_bootstrap(
        conn, "boot", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=None
    )
    assert await apikeys.bootstrap_secret(conn, "boot") == first
    key = await apikeys.authenticate(conn, "boot")
    assert key is not None and key.signing_secrets == [first]

    # WEBHOOK_SECRET set later takes over (the generated one signs alongside, as on a change).
    chosen = apikeys.generate_webhook_secret()
    await apikeys.ensure_bootstrap(
        conn, "boot", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=chosen
    )
    key = await apikeys.authenticate(conn, "boot")
    assert key is not None and key.signing_secrets == [chosen, first]
    # ...and stays when the next start passes it again.
    await apikeys.ensure_bootstrap(
        conn, "boot", tenant_prefix="", webhook_url="https://a.example/hook", webhook_secret=chosen
    )
    assert await apikeys.bootstrap_secret(conn, "boot") == chosen


async def test_transcribe_init_prints_the_generated_bootstrap_secret(
    postgres_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = await create_database(postgres_server, "init")
    settings = replace(Settings.from_env({}), database_url=dsn, api_key="boot-init")

    async def schema_and_key_only(s: Settings) -> None:  # no bucket, stream or consumers here
        await provision.migrate_database(s.require_database_url())
        await provision.ensure_bootstrap_key(s)

    monkeypatch.setattr(provision, "provision", schema_and_key_only)
    # cmd_init runs its own event loop: run it off this test's loop.
    assert await asyncio.to_thread(cmd_init, None, settings) == 0  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    conn = await asyncpg.connect(dsn)
    try:
        secret = await apikeys.bootstrap_secret(conn, "boot-init")
    finally:
        await conn.close()
    assert secret is not None and secret.startswith("whsec_")
    assert (
        f"bootstrap key webhook secret (generated; set WEBHOOK_SECRET to choose one): {secret}"
        in printed
    )
