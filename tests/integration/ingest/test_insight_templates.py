"""Insight templates through the API and `transcribe insights` (libs/llm/template.py owns the
tables): per key, per campaign, validated, tenant-separated; the operator's off switch."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from libs.llm import template as templates
from tests.integration.ingest.conftest import Api, make_key

pytestmark = pytest.mark.integration

PATH = "/api/insights/template"
TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")
GOOD: dict[str, Any] = {
    "outcomes": ["cancelled", "retained"],
    "questions": [
        {"id": "recording_notice", "text": "Did the agent read the recording notice?"},
        {"id": "offer", "text": "What was offered?", "kind": "text"},
    ],
    "sentiment": False,
}


async def put(api: Api, as_key: str, body: Any, **params: str) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer, _ = await api.request(
        "PUT",
        PATH,
        key=as_key,
        params=params,
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    return status, answer


async def test_key_and_campaign_templates(api: Api) -> None:
    raw, key = await make_key(api.pool)
    key_id = uuid.UUID(key.id)
    status, body, _ = await api.request("GET", PATH, key=raw)
    assert status == 200
    assert body["source"] == "default"
    assert body["insights_enabled"] is True
    assert body["template"]["summary"] is True

    status, body = await put(api, raw, GOOD)
    assert status == 200, body
    assert body["source"] == "key"
    assert body["template"]["outcomes"] == ["cancelled", "retained"]
    assert body["template"]["questions"][0]["kind"] == "yes_no"
    status, body = await put(api, raw, {"outcomes": ["sold"]}, campaign="spring")
    assert (status, body["source"], body["campaign"]) == (200, "campaign", "spring")

    # What a call of each campaign is asked (the service's read).
    spring = await templates.template_for(api.pool, key_id, "spring")
    other = await templates.template_for(api.pool, key_id, "autumn")
    assert spring.outcomes == ("sold",)
    assert other.outcomes == ("cancelled", "retained")
    assert other.sentiment is False
    status, body, _ = await api.request("GET", PATH, key=raw, params={"campaign": "autumn"})
    assert (body["source"], body["campaign"]) == ("key", "autumn")

    status, body, _ = await api.request("DELETE", PATH, key=raw, params={"campaign": "spring"})
    assert (status, body["source"]) == (200, "key")
    assert (await templates.template_for(api.pool, key_id, "spring")).outcomes == (
        "cancelled",
        "retained",
    )
    status, body, _ = await api.request("DELETE", PATH, key=raw, params={"campaign": "spring"})
    assert (status, body["error"]) == (404, "no_template")
    status, body, _ = await api.request("DELETE", PATH, key=raw)
    assert (status, body["source"]) == (200, "default")
    assert await templates.template_for(api.pool, key_id, "spring") == templates.DEFAULT


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        ({"outcomes": "cancelled"}, "$.outcomes"),
        ({"outcomes": ["a", "a"]}, "$.outcomes[1]"),
        ({"outcomes": ["bad\u0000nul"]}, "$.outcomes[0]"),
        ({"outcomes": [""]}, "$.outcomes[0]"),
        ({"outcomes": [str(i) for i in range(templates.MAX_OUTCOMES + 1)]}, "$.outcomes"),
        ({"questions": [{"id": "Bad Id", "text": "x"}]}, "$.questions[0].id"),
        ({"questions": [{"id": "a", "text": "x", "kind": "score"}]}, "$.questions[0].kind"),
        ({"questions": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "$.questions[1].id"),
        ({"questions": [{"id": "a", "text": "x" * 501}]}, "$.questions[0].text"),
        ({"summary": "yes"}, "$.summary"),
        ({"unknown": 1}, "unknown"),
        ([], "$"),
        (b"x" * (templates.MAX_TEMPLATE_BYTES + 10), "at most"),
    ],
)
async def test_bad_templates_are_400_naming_the_part(api: Api, body: Any, where: str) -> None:
    raw, key = await make_key(api.pool)
    status, answer = await put(api, raw, body)
    assert status == 400
    assert answer["error"] in ("invalid_template", "invalid_json")
    assert where in answer["detail"] or where == answer["error"]
    # Nothing half-written.
    assert await templates.get(api.pool, uuid.UUID(key.id)) is None


async def test_keys_see_their_own_templates_only(api: Api) -> None:
    raw_a, key_a = await make_key(api.pool)
    raw_b, key_b = await make_key(api.pool)
    await put(api, raw_a, {"outcomes": ["a-only"]})
    status, body, _ = await api.request("GET", PATH, key=raw_b)
    assert body["source"] == "default"
    status, body, _ = await api.request("GET", PATH, key=raw_b, params={"key": key_a.id})
    assert (status, body["error"]) == (403, "not_operator")
    status, body = await put(api, raw_b, {"outcomes": ["x"]}, key=key_a.id)
    assert status == 403
    # The operator (bootstrap) key manages any key's.
    status, body, _ = await api.request("GET", PATH, params={"key": key_a.id})
    assert (status, body["template"]["outcomes"]) == (200, ["a-only"])
    status, body = await put(api, "test-bootstrap-key", {"outcomes": ["op"]}, key=key_b.id)
    assert (status, body["key_id"]) == (200, key_b.id)
    status, body, _ = await api.request("GET", PATH, params={"key": str(uuid.uuid4())})
    assert status == 404


async def test_operator_turns_insights_off_for_a_key(api: Api) -> None:
    raw, key = await make_key(api.pool)
    key_id = uuid.UUID(key.id)
    assert await templates.insights_enabled(api.pool, key_id) is True
    switch = "/api/insights/enabled"
    status, body, _ = await api.request(
        "PUT", switch, key=raw, params={"key": key.id, "enabled": "false"}
    )
    assert (status, body["error"]) == (403, "not_operator")
    status, body, _ = await api.request("PUT", switch, params={"key": key.id, "enabled": "false"})
    assert (status, body) == (200, {"key_id": key.id, "enabled": False})
    assert await templates.insights_enabled(api.pool, key_id) is False
    status, body, _ = await api.request("GET", PATH, key=raw)
    assert body["insights_enabled"] is False
    status, body, _ = await api.request("PUT", switch, params={"key": key.id, "enabled": "maybe"})
    assert status == 400
    status, body, _ = await api.request("PUT", switch, params={"key": key.id})
    assert (status, body["error"]) == (400, "missing_enabled")


async def _cli(api: Api, key: str, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TRANSCRIBE_API_URL": api.base_url,
        "TRANSCRIBE_API_KEY": key,
    }
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        "insights",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli(api: Api, tmp_path: Path) -> None:
    raw, key = await make_key(api.pool)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(GOOD))
    code, out, err = await _cli(api, raw, "template", "set", str(path), "--campaign", "spring")
    assert code == 0, err
    assert json.loads(out)["source"] == "campaign"
    code, out, _ = await _cli(api, raw, "template", "get", "--campaign", "spring")
    assert json.loads(out)["template"]["outcomes"] == GOOD["outcomes"]
    code, out, err = await _cli(api, raw, "template", "set", "-", stdin=b'{"outcomes": 3}')
    assert code == 1
    assert "invalid_template" in err
    code, out, _ = await _cli(api, raw, "template", "delete", "--campaign", "spring")
    assert (code, json.loads(out)["source"]) == (0, "default")
    code, out, _ = await _cli(api, raw, "template", "get", "--campaign", "spring")
    assert json.loads(out)["source"] == "default"
    code, _, err = await _cli(api, raw, "off", key.id)
    assert code == 1 and "not_operator" in err
    code, out, err = await _cli(api, "test-bootstrap-key", "off", key.id)
    assert code == 0, err
    assert json.loads(out) == {"key_id": key.id, "enabled": False}
    code, out, _ = await _cli(api, "test-bootstrap-key", "on", key.key_hint)
    assert json.loads(out)["enabled"] is True
