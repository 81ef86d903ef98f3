"""Every webhook is signed: keys created without a webhook URL (their jobs' callback_urls, their
test events), keys created before secrets were universal (migration 0007), and no delivery is
ever POSTed without a signature."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext
from standardwebhooks.webhooks import Webhook

from libs import apikeys
from libs.db import migrate
from libs.webhooks import admin
from tests.integration.notifier.harness import (
    Notifier,
    attempt_rows,
    failed_event,
    make_job,
    make_key,
    publish,
    ready_event,
    receiver,
)
from tests.stack_fixtures import create_database, eventually

pytestmark = pytest.mark.integration


async def test_callback_urls_of_a_key_created_without_a_webhook_url_are_signed(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    # No webhook URL and no secret given: the key got its secret at creation.
    key = await make_key(npool, webhook_url=None, secret=None)
    async with receiver(key.secret) as r:
        notifier.configure(r.hostport).start()
        done, failed = (
            await make_job(npool, key, callback_url=r.url),
            await make_job(npool, key, callback_url=r.url, completed=False),
        )
        for event in (ready_event(done), failed_event(failed)):
            await publish(js, event)
            [hit] = await r.wait_accepted(event.event_id)
            assert hit.headers["webhook-signature"].startswith("v1,")
            assert Webhook(key.secret).verify(hit.body, hit.headers)["data"]["audio_file_id"] in {
                str(done.id),
                str(failed.id),
            }


async def test_test_events_of_a_key_without_a_webhook_url_are_signed(
    npool: asyncpg.Pool, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None, secret=None)
    async with receiver(key.secret) as r:
        notifier.configure(r.hostport).start()
        delivery_id = await admin.send_test(npool, key.id, r.url)
        test = await admin.get(npool, admin.Scope(key.id), delivery_id)
        [hit] = await r.wait_accepted(test.webhook_id)
    assert hit.payload is not None and hit.payload["type"] == "webhook.test"
    Webhook(key.secret).verify(hit.body, hit.headers)


async def test_a_delivery_without_a_secret_fails_instead_of_going_out_unsigned(
    npool: asyncpg.Pool, notifier: Notifier
) -> None:
    # A row no key signs for (api_key_id is nullable in the queue): the notifier refuses it.
    async with receiver(apikeys.generate_webhook_secret()) as r:
        delivery_id = await npool.fetchval(
            "INSERT INTO media_pipeline.webhook_deliveries"
            " (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload)"
            " VALUES ($1, 'webhook.test', NULL, NULL, $2, $3) RETURNING id",
            uuid.uuid4(),
            r.url,
            b'{"type":"webhook.test","data":{}}',
        )
        notifier.configure(r.hostport).start()

        async def finished() -> asyncpg.Record | None:
            return await npool.fetchrow(
                "SELECT * FROM media_pipeline.webhook_deliveries WHERE id = $1 AND status <> 'pending'",
                delivery_id,
            )

        row = await eventually(finished, timeout=10)
        assert r.hits == []  # nothing was POSTed
    assert row["status"] == "failed" and row["attempts"] == 1  # permanent: no retries
    assert row["last_error"].startswith("unsigned:")
    [attempt] = await attempt_rows(npool, delivery_id)
    assert attempt["status_code"] is None and attempt["error"].startswith("unsigned:")


async def test_migration_gives_keys_without_a_secret_one_and_forbids_none(
    postgres_server: Any,
) -> None:
    dsn = await create_database(postgres_server, "signmig")
    conn = await asyncpg.connect(dsn)
    try:
        # The schema as it was before 0007, with keys that had no secret.
        await conn.execute(migrate.CREATE_VERSIONS)
        for m in migrate.load_migrations():
            if m.version < 7:
                await conn.execute(m.sql)
                await conn.execute(migrate.RECORD_VERSION, m.version, m.name)
        old = [uuid.uuid4(), uuid.uuid4()]
        for i, key_id in enumerate(old):
            await conn.execute(
                "INSERT INTO media_pipeline.api_keys (id, name, key_hash, key_hint)"
                " VALUES ($1, 'old', $2, 'tgw_old')",
                key_id,
                f"hash{i}",
            )
        kept = apikeys.generate_webhook_secret()
        await conn.execute(
            "INSERT INTO media_pipeline.api_keys (id, name, key_hash, key_hint, webhook_secret)"
            " VALUES ($1, 'signed', 'hash-s', 'tgw_sig', $2)",
            uuid.uuid4(),
            kept,
        )
        applied = await migrate.migrate(conn)
        assert 7 in [m.version for m in applied]
        secrets = {
            r["name"] + str(r["id"]): r["webhook_secret"]
            for r in await conn.fetch("SELECT * FROM media_pipeline.api_keys")
        }
        assert kept in secrets.values()
        generated = [s for s in secrets.values() if s != kept]
        assert len(generated) == 2 and len(set(generated)) == 2
        for secret in generated:
            assert secret.startswith("whsec_")
            assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
            Webhook(secret)  # the reference package accepts it
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute(
                "UPDATE media_pipeline.api_keys SET webhook_secret = NULL WHERE id = $1", old[0]
            )
    finally:
        await conn.close()


async def test_every_key_made_by_the_library_has_a_secret(npool: asyncpg.Pool) -> None:
    async with npool.acquire() as conn:
        _, record = await apikeys.create(conn, name="plain", tenant_prefix="plain")
    assert record.webhook_secret.startswith("whsec_")
    assert record.signing_secrets == [record.webhook_secret]
