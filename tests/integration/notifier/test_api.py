"""The webhook API in the ingest app, on the notifier's database with a notifier running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.js import JetStreamContext
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs import apikeys, bus
from libs.blobstore import MemoryBlobStore
from libs.settings import Settings
from services.ingest import bodies
from services.ingest.app import create_app
from tests.integration.notifier.harness import (
    Notifier,
    delivery_rows,
    make_job,
    make_key,
    publish,
    ready_event,
    receiver,
)
from tests.shapes import conforms
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(notifier_settings: Settings, npool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    nc = await bus.connect(notifier_settings.nats_servers, name="notifier-api-tests")
    app = create_app(notifier_settings, pool=npool, store=MemoryBlobStore(), nc=nc)
    async with TestClient(TestServer(app)) as client:
        yield client
    await nc.drain()


async def test_a_key_lists_its_jobs_deliveries_with_attempts_and_nobody_elses(
    api: TestClient, npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    key = await make_key(npool, webhook_url=None)
    other = await make_key(npool, webhook_url=None)
    async with receiver(key.secret) as r:
        r.script = [(500, {})]
        job = await make_job(npool, key, callback_url=r.url)
        notifier.configure(r.hostport).start()
        event = ready_event(job)
        await publish(js, event)
        await r.wait_accepted(event.event_id)

    async def listed() -> dict[str, object] | None:
        resp = await api.get(
            "/api/webhooks/deliveries",
            params={"audio_file_id": str(job.id)},
            headers={"X-API-Key": key.raw},
        )
        assert resp.status == 200
        body = await resp.json()
        ok = body["deliveries"] and body["deliveries"][0]["status"] == "succeeded"
        return body if ok else None

    body = await eventually(listed, timeout=5)
    conforms(body, bodies.Deliveries)
    [d] = body["deliveries"]  # type: ignore[index]
    assert d["webhook_id"] == event.event_id
    assert d["endpoint_url"] == r.url
    assert [(a["attempt"], a["status_code"]) for a in d["attempt_log"]] == [(1, 500), (2, 200)]
    assert all(isinstance(a["latency_ms"], int) for a in d["attempt_log"])
    assert "body" not in str(d).lower()  # response bodies are never shown

    for who, params in (
        (other.raw, {"audio_file_id": str(job.id)}),
        (key.raw, {"audio_file_id": str(uuid.uuid4())}),
    ):
        resp = await api.get("/api/webhooks/deliveries", params=params, headers={"X-API-Key": who})
        assert resp.status == 404
    resp = await api.get(f"/api/webhooks/deliveries/{d['id']}", headers={"X-API-Key": other.raw})
    assert resp.status == 404
    resp = await api.post(
        f"/api/webhooks/deliveries/{d['id']}/resend", headers={"X-API-Key": other.raw}
    )
    assert resp.status == 404


async def test_bad_input_answers_4xx(api: TestClient, npool: asyncpg.Pool) -> None:
    key = await make_key(npool, webhook_url=None)
    h = {"X-API-Key": key.raw}
    cases = [
        (api.get("/api/webhooks/deliveries"), 401),
        (api.get("/api/webhooks/deliveries", headers=h), 400),
        (api.get("/api/webhooks/deliveries", params={"audio_file_id": "x"}, headers=h), 400),
        (api.get("/api/webhooks/deliveries/abc", headers=h), 404),
        (api.get("/api/webhooks/deliveries/99999999999999999999", headers=h), 404),
        (api.post("/api/webhooks/recover", headers=h), 400),
        (api.post("/api/webhooks/recover", params={"since": "yesterday"}, headers=h), 400),
        (
            api.post(
                "/api/webhooks/recover",
                json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                headers=h,
            ),
            400,
        ),
        (
            api.post(
                "/api/webhooks/recover",
                data=b"{not json",
                headers={**h, "Content-Type": "application/json"},
            ),
            400,
        ),
        (api.post("/api/webhooks/test", headers=h), 409),  # no endpoint configured
        (
            api.post("/api/webhooks/test", json={"url": "http://10.0.0.1/x"}, headers=h),
            400,
        ),
        (api.post("/api/webhooks/test", params={"wait": "nan"}, headers=h), 400),
        (api.post("/api/webhooks/endpoint/enable", headers=h), 409),
    ]
    for call, status in cases:
        resp = await call
        assert resp.status == status, (resp.url, await resp.text())
        assert "error" in await resp.json()


async def test_resend_recover_test_event_and_re_enable(
    api: TestClient, npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        r.secret = key.secret
        h = {"X-API-Key": key.raw}
        notifier.configure(r.hostport).start()

        # A 410 disables the endpoint; a second job's event is kept, not sent.
        r.script = [(410, {})]
        first, second = await make_job(npool, key), await make_job(npool, key)
        since = datetime.now(UTC) - timedelta(seconds=1)
        e1 = ready_event(first)
        await publish(js, e1)
        await r.wait_hits(str(first.id), 1)

        async def endpoint_disabled() -> dict[str, object] | None:
            body = await (await api.get("/api/webhooks/endpoint", headers=h)).json()
            return body if body["enabled"] is False else None

        state = await eventually(endpoint_disabled, timeout=5)
        assert state["disabled_reason"] == "410 Gone"
        conforms(state, bodies.Endpoint)
        e2 = ready_event(second)
        await publish(js, e2)

        async def kept() -> list[asyncpg.Record] | None:
            return await delivery_rows(npool, second) or None

        [d2] = await eventually(kept, timeout=5)

        # Resending to a disabled endpoint is refused; a test event is allowed (to check it).
        resp = await api.post(f"/api/webhooks/deliveries/{d2['id']}/resend", headers=h)
        assert resp.status == 409
        resp = await api.post("/api/webhooks/test", json={"wait": 10}, headers=h)
        assert resp.status == 200
        test = await resp.json()
        assert test["event_type"] == "webhook.test"
        assert test["attempt_log"][0]["status_code"] == 200
        [test_hit] = r.accepted(test["webhook_id"])
        assert test_hit.payload is not None and test_hit.payload["data"]["test"] is True

        # Re-enable, then recover everything since before the outage: both jobs arrive.
        resp = await api.post("/api/webhooks/endpoint/enable", headers=h)
        assert resp.status == 200 and (await resp.json())["enabled"] is True
        resp = await api.post("/api/webhooks/recover", json={"since": since.isoformat()}, headers=h)
        assert resp.status == 202
        assert (await resp.json())["recovered"] == 2
        await r.wait_accepted(e1.event_id)
        await r.wait_accepted(e2.event_id)

        # Resend one delivered event: same webhook-id again.
        [d1] = await delivery_rows(npool, first)

        async def settled() -> bool:
            [row] = await delivery_rows(npool, first)
            return bool(row["status"] == "succeeded")

        await eventually(settled, timeout=5)
        resp = await api.post(f"/api/webhooks/deliveries/{d1['id']}/resend", headers=h)
        assert resp.status == 202
        await r.wait_accepted(e1.event_id, count=2)


async def test_secret_rotation_signs_with_both_until_finished(
    api: TestClient, npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier
) -> None:
    async with receiver("") as r:
        key = await make_key(npool, webhook_url=r.url)
        old = key.secret
        r.secret = old  # the customer has not switched yet
        h = {"X-API-Key": key.raw}
        notifier.configure(r.hostport).start()

        resp = await api.post("/api/webhooks/endpoint/rotate-secret", headers=h)
        assert resp.status == 200
        state = await resp.json()
        new = state["webhook_secret"]
        conforms(state, bodies.Endpoint)
        assert new.startswith("whsec_") and new != old
        assert state["secret_rotation_in_progress"] is True

        job = await make_job(npool, key)
        event = ready_event(job)
        await publish(js, event)
        [hit] = await r.wait_accepted(event.event_id)  # verified with the OLD secret
        assert len(hit.headers["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(hit.body, hit.headers)  # and with the new one

        resp = await api.post("/api/webhooks/endpoint/finish-rotation", headers=h)
        assert resp.status == 200
        assert (await resp.json())["secret_rotation_in_progress"] is False
        r.secret = new
        job2 = await make_job(npool, key)
        event2 = ready_event(job2)
        await publish(js, event2)
        [hit2] = await r.wait_accepted(event2.event_id)
        assert len(hit2.headers["webhook-signature"].split(" ")) == 1
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(hit2.body, hit2.headers)


async def test_setting_the_endpoint_url(
    api: TestClient, npool: asyncpg.Pool, notifier_settings: Settings
) -> None:
    key = await make_key(npool, webhook_url=None, secret=None)
    h = {"X-API-Key": key.raw}
    for bad in ({}, {"url": "http://169.254.169.254/"}, {"url": "ftp://hooks.example/"}):
        resp = await api.put("/api/webhooks/endpoint", json=bad, headers=h)
        assert resp.status == 400, bad
    resp = await api.put(
        "/api/webhooks/endpoint", json={"url": "https://hooks.example/in"}, headers=h
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["webhook_url"] == "https://hooks.example/in" and body["enabled"] is True
    # Every key has had its secret since creation (shown then): setting a URL keeps it.
    assert body["signed"] is True and "webhook_secret" not in body
    resp = await api.put(
        "/api/webhooks/endpoint", json={"url": "https://hooks.example/v2"}, headers=h
    )
    assert "webhook_secret" not in await resp.json()  # kept
    secret = await npool.fetchval(
        "SELECT webhook_secret FROM media_pipeline.api_keys WHERE id = $1", key.id
    )
    assert secret == key.secret

    # The bootstrap key's endpoint and secret belong to WEBHOOK_URL / WEBHOOK_SECRET.
    raw = f"bootstrap-{uuid.uuid4().hex}"
    async with npool.acquire() as conn:
        await apikeys.ensure_bootstrap(
            conn, raw, tenant_prefix="", webhook_url="https://hooks.example/b", webhook_secret=None
        )
    try:
        for method, path in (
            ("PUT", "/api/webhooks/endpoint"),
            ("POST", "/api/webhooks/endpoint/rotate-secret"),
            ("POST", "/api/webhooks/endpoint/finish-rotation"),
        ):
            resp = await api.request(
                method, path, json={"url": "https://hooks.example/x"}, headers={"X-API-Key": raw}
            )
            assert resp.status == 409, path
            assert (await resp.json())["error"] == "managed_by_environment"
    finally:
        await npool.execute(
            "UPDATE media_pipeline.api_keys SET revoked_at = now() WHERE key_hint = $1", raw[:8]
        )
