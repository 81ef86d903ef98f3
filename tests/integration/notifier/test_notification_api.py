"""/api/notifications in the ingest app and `transcribe notify`, on the notifier's database:
validation, tenants, test messages, the delivery log and resend."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from libs import apikeys, bus
from libs.blobstore import MemoryBlobStore
from libs.notifications import rules
from libs.settings import Settings
from services.cli import main
from services.ingest.app import create_app
from services.ingest.routes.notifications import NotificationDeliveries
from tests.fakes.slack_server import SlackServer
from tests.integration.notifier.harness import Notifier, make_key
from tests.shapes import conforms

pytestmark = pytest.mark.integration


@pytest.fixture
async def slack() -> AsyncIterator[SlackServer]:
    async with SlackServer() as server:
        yield server


@pytest.fixture
async def api(
    notifier_settings: Settings, npool: asyncpg.Pool, slack: SlackServer
) -> AsyncIterator[TestClient]:
    nc = await bus.connect(notifier_settings.nats_servers, name="notification-api-tests")
    settings = replace(notifier_settings, ssrf_allowlist=slack.hostport)
    app = create_app(settings, pool=npool, store=MemoryBlobStore(), nc=nc)
    async with TestClient(TestServer(app)) as client:
        yield client
    await nc.drain()


def _h(raw: str) -> dict[str, str]:
    return {"X-API-Key": raw}


async def test_a_key_manages_its_own_rules_only(api: TestClient, npool: asyncpg.Pool) -> None:
    key = await make_key(npool, webhook_url=None)
    other = await make_key(npool, webhook_url=None)
    resp = await api.post(
        "/api/notifications",
        headers=_h(key.raw),
        json={
            "events": ["failed", "category:cancel"],
            "emails": ["Ops@Example.com"],
            "campaign": "spring",
        },
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    conforms(created, rules.Rule)
    assert created["events"] == ["failed", "category:cancel"] and created["enabled"] is True
    assert created["key_id"] == str(key.id) and created["tenant"] == key.tenant
    rule_id = created["id"]

    listed = await (await api.get("/api/notifications", headers=_h(key.raw))).json()
    assert [r["id"] for r in listed["rules"]] == [rule_id]
    theirs = await (await api.get("/api/notifications", headers=_h(other.raw))).json()
    assert theirs == {"rules": []}
    for method, path in (
        ("GET", f"/api/notifications/{rule_id}"),
        ("DELETE", f"/api/notifications/{rule_id}"),
        ("POST", f"/api/notifications/{rule_id}/test"),
        ("GET", f"/api/notifications/deliveries?rule_id={rule_id}"),
    ):
        resp = await api.request(method, path, headers=_h(other.raw))
        assert resp.status == 404, (method, path)
    resp = await api.delete(f"/api/notifications/{rule_id}", headers=_h(key.raw))
    assert resp.status == 200 and (await resp.json()) == {"id": rule_id, "removed": True}
    assert (await api.get(f"/api/notifications/{rule_id}", headers=_h(key.raw))).status == 404


async def test_the_operator_key_sees_and_removes_every_rule(
    api: TestClient, npool: asyncpg.Pool
) -> None:
    raw = apikeys.generate_key()
    async with npool.acquire() as conn:
        await apikeys.ensure_bootstrap(
            conn, raw, tenant_prefix="", webhook_url=None, webhook_secret=None
        )
    mine = await make_key(npool, webhook_url=None)
    rule = await rules.create(
        npool, mine.id, rules.NewRule(events=["completed"], emails=["a@example.com"]).checked("")
    )
    listed = await (await api.get("/api/notifications", headers=_h(raw))).json()
    assert rule.id in [r["id"] for r in listed["rules"]]
    resp = await api.delete(f"/api/notifications/{rule.id}", headers=_h(raw))
    assert resp.status == 200
    assert await rules.list_(npool, mine.id) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"events": ["fail"], "emails": ["a@example.com"]}', "invalid_event"),
        (b'{"events": ["category:a\\r\\nb"], "emails": ["a@example.com"]}', "invalid_event"),
        (b'{"events": ["failed\\u0000"], "emails": ["a@example.com"]}', "invalid_event"),
        (b'{"events": [], "emails": ["a@example.com"]}', "invalid_event"),
        (b'{"events": ["failed"]}', "invalid_target"),
        (
            b'{"events": ["failed"], "emails": ["a@example.com"], '
            b'"slack_url": "https://hooks.slack.com/x"}',
            "invalid_target",
        ),
        (b'{"events": ["failed"], "slack_url": "http://10.0.0.1/hook"}', "url_private_address"),
        (b'{"events": ["failed"], "emails": ["not an address"]}', "invalid_email"),
        (b'{"events": ["failed"], "emails": ["a@example.com"], "bcc": "x"}', "invalid_rule"),
        (b'{"events": "failed", "emails": ["a@example.com"]}', "invalid_rule"),
        (
            b'{"events": ["failed"], "emails": ["a@example.com"], "campaign": "a\\nb"}',
            "invalid_campaign",
        ),
        (b"[1, 2]", "invalid_rule"),
        (b"\xff\xfe not json", "invalid_json"),
    ],
)
async def test_bad_rules_are_refused_and_nothing_is_stored(
    api: TestClient, npool: asyncpg.Pool, body: bytes, code: str
) -> None:
    key = await make_key(npool, webhook_url=None)
    resp = await api.post(
        "/api/notifications",
        data=body,
        headers={**_h(key.raw), "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert answer["error"] == code, answer
    assert await rules.list_(npool, key.id) == []


async def test_too_large_and_not_json(api: TestClient, npool: asyncpg.Pool) -> None:
    key = await make_key(npool, webhook_url=None)
    big = b'{"events": ["failed"], "emails": ["' + b"a" * 70_000 + b'@example.com"]}'
    resp = await api.post(
        "/api/notifications", data=big, headers={**_h(key.raw), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    resp = await api.post("/api/notifications", data=b"events=failed", headers=_h(key.raw))
    assert resp.status == 400


async def test_a_test_message_is_sent_listed_and_resent(
    api: TestClient, npool: asyncpg.Pool, notifier: Notifier, slack: SlackServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    resp = await api.post(
        "/api/notifications",
        headers=_h(key.raw),
        json={"events": ["outcome:sale"], "slack_url": slack.url},
    )
    assert resp.status == 201, await resp.text()
    rule = await resp.json()
    # The Slack URL is a secret: never shown in full, nor in the delivery log.
    assert rule["slack"] == "http://127.0.0.1:" + str(slack.port) + "/…"
    assert "SECRET" not in json.dumps(rule)
    notifier.configure(slack.hostport).start()
    resp = await api.post(f"/api/notifications/{rule['id']}/test", headers=_h(key.raw))
    assert resp.status == 202
    (message,) = await slack.wait_messages(1)
    assert "Test notification" in message["text"]

    listed = await (
        await api.get(f"/api/notifications/deliveries?rule_id={rule['id']}", headers=_h(key.raw))
    ).json()
    conforms(listed, NotificationDeliveries)
    (delivery,) = listed["deliveries"]
    assert delivery["event_type"] == "notification.test"
    assert delivery["endpoint_url"] == f"slack:{rule['id']}" and "SECRET" not in json.dumps(listed)
    resp = await api.post(
        f"/api/notifications/deliveries/{delivery['id']}/resend", headers=_h(key.raw)
    )
    assert resp.status == 202
    await slack.wait_messages(2)


async def test_openapi_documents_the_notification_routes(api: TestClient) -> None:
    spec = await (await api.get("/openapi.json")).json()
    post = spec["paths"]["/api/notifications"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/NewRule"}
    assert {"get", "post"} <= set(spec["paths"]["/api/notifications"])
    assert "delete" in spec["paths"]["/api/notifications/{rule_id}"]
    assert "post" in spec["paths"]["/api/notifications/{rule_id}/test"]
    assert "Rule" in spec["components"]["schemas"]


# ---- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def keep_logging_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
async def cli_key(npool: asyncpg.Pool) -> str:
    return str((await make_key(npool, webhook_url=None)).id)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main(["--log-format", "console", "notify", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


def test_operator_adds_lists_and_removes_rules(
    cli_key: str,
    notifier_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keep_logging_config: None,
) -> None:
    monkeypatch.setenv("DATABASE_URL", notifier_settings.require_database_url())
    code, added = _cli(
        capsys,
        "add",
        "--key",
        cli_key,
        "--on",
        "failed",
        "--on",
        "dead_lettered",
        "--email",
        "a@example.com",
        "--email",
        "b@example.com",
        "--campaign",
        "spring",
    )
    assert code == 0 and isinstance(added, dict)
    assert added["events"] == ["failed", "dead_lettered"] and added["campaign"] == "spring"
    assert added["emails"] == ["a@example.com", "b@example.com"]
    code, listed = _cli(capsys, "list", "--key", cli_key)
    assert code == 0 and isinstance(listed, list) and [r["id"] for r in listed] == [added["id"]]

    assert main(["notify", "add", "--key", cli_key, "--on", "bogus", "--email", "a@x.io"]) == 2
    assert (
        main(["notify", "add", "--key", cli_key, "--on", "failed", "--slack", "http://10.0.0.1/x"])
        == 2
    )
    assert main(["notify", "add", "--key", "nope", "--on", "failed", "--email", "a@x.io"]) == 1
    with pytest.raises(SystemExit):  # --email and --slack together
        main(
            [
                "notify",
                "add",
                "--key",
                cli_key,
                "--on",
                "failed",
                "--email",
                "a@x.io",
                "--slack",
                "https://hooks.slack.com/x",
            ]
        )
    capsys.readouterr()
    # No notifier runs here: the test message is queued and reported as not yet attempted.
    code, test = _cli(capsys, "test", added["id"], "--wait", "0")
    assert code == 0 and isinstance(test, dict)
    assert test["event_type"] == "notification.test" and test["attempt_log"] == []
    assert test["endpoint_url"] == f"email:{added['id']}"
    code, listed = _cli(capsys, "deliveries", "--rule", added["id"])
    assert code == 0 and isinstance(listed, list) and [d["id"] for d in listed] == [test["id"]]
    code, resent = _cli(capsys, "resend", str(test["id"]))
    assert code == 0 and resent == {"id": test["id"], "status": "pending"}
    code, enabled = _cli(capsys, "enable", added["id"])
    assert code == 0 and isinstance(enabled, dict) and enabled["enabled"] is True
    code, removed = _cli(capsys, "remove", added["id"])
    assert code == 0 and removed == {"id": added["id"], "removed": True}
    assert main(["notify", "remove", added["id"]]) == 1
    assert main(["notify", "remove", str(uuid.uuid4())]) == 1
