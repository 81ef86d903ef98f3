"""The multichannel and channel_roles submit options: validated, stored on the job, carried by
its AudioStored event; every bad or hostile value is a 400 that stores nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from libs import apikeys
from libs.settings import Settings
from tests.fixtures.calls import CALL_STEREO
from tests.integration.ingest.conftest import Api, make_key, unique_prefix
from tests.integration.ingest.test_keys_cli import _keys

pytestmark = pytest.mark.integration

CALL = CALL_STEREO.read_bytes()


def _form(prefix: str, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", CALL, filename="call.ogg", content_type="audio/ogg")
    return form


async def _event(api: Api, job_id: str) -> dict[str, Any]:
    payload = await api.pool.fetchval(
        "SELECT convert_from(payload, 'UTF8') FROM media_pipeline.outbox"
        " WHERE subject LIKE 'transcribe.audio.stored.%'"
        " AND convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
        job_id,
    )
    event: dict[str, Any] = json.loads(payload)
    return event


async def test_defaults_are_auto_and_the_keys_roles(api: Api) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(_form(prefix))
    assert status == 200, body
    [row] = await api.rows(prefix)
    assert (row["multichannel"], row["channel_roles"]) == ("auto", None)
    event = await _event(api, body["audio_file_id"])
    assert (event["multichannel"], event["channel_roles"]) == ("auto", None)


async def test_options_are_stored_and_announced(api: Api) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(
        _form(prefix, multichannel="TRUE", channel_roles=" Customer , agent")
    )
    assert status == 200, body
    [row] = await api.rows(prefix)
    assert (row["multichannel"], row["channel_roles"]) == ("true", ["customer", "agent"])
    event = await _event(api, body["audio_file_id"])
    assert (event["multichannel"], event["channel_roles"]) == ("true", ["customer", "agent"])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"multichannel": "maybe"}, "invalid_multichannel"),
        ({"multichannel": "1"}, "invalid_multichannel"),
        ({"channel_roles": ","}, "invalid_channel_roles"),
        ({"channel_roles": "agent,,customer"}, "invalid_channel_roles"),
        ({"channel_roles": "9lives"}, "invalid_channel_roles"),
        ({"channel_roles": "agent;drop"}, "invalid_channel_roles"),
        ({"channel_roles": "a" * 33}, "invalid_channel_roles"),
        ({"channel_roles": ",".join(["agent"] * 9)}, "invalid_channel_roles"),
        ({"channel_roles": "agént"}, "invalid_channel_roles"),
        ({"channel_roles": "agent\u202ecustomer"}, ""),
        ({"channel_roles": "agent\x00"}, ""),
        ({"multichannel": "auto\x01"}, ""),
        ({"channel_roles": "x" * 20_000}, ""),
    ],
)
async def test_bad_values_are_400_and_store_nothing(
    api: Api, fields: dict[str, str], code: str
) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(_form(prefix, **fields))
    assert status == 400, body
    assert body["error"].startswith(code) and body["detail"]
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []


async def test_non_utf8_option_is_400(api: Api) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.request(
        "POST",
        "/api/media/transcribe",
        data=b"url=http%3A%2F%2Fexample.com%2Fa.wav&channel_roles=%FF%FE&b2_prefix="
        + prefix.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400, body
    assert await api.rows(prefix) == []


async def test_the_keys_role_map_applies_unless_the_job_says_otherwise(api: Api) -> None:
    raw, key = await make_key(api.pool, channel_roles="customer,agent")
    assert key.channel_roles == ("customer", "agent")
    prefix = key.tenant_prefix
    status, body, _ = await api.submit(_form(prefix), key=raw)
    assert status == 200, body
    event = await _event(api, body["audio_file_id"])
    assert event["channel_roles"] == ["customer", "agent"]
    status, body, _ = await api.submit(_form(prefix, channel_roles="supervisor,agent"), key=raw)
    assert status == 200, body
    event = await _event(api, body["audio_file_id"])
    assert event["channel_roles"] == ["supervisor", "agent"]


async def test_a_bad_key_role_map_is_refused(api: Api) -> None:
    with pytest.raises(apikeys.InvalidKeySettings, match="channel roles"):
        await make_key(api.pool, channel_roles="agent,")
    async with api.pool.acquire() as conn:
        assert not await apikeys.set_channel_roles(conn, str(uuid.uuid4()), "agent")


async def test_keys_cli_sets_and_clears_the_role_map(api: Api, ingest_settings: Settings) -> None:
    env = {"DATABASE_URL": ingest_settings.require_database_url()}
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = _keys(
        env, "create", "--name", name, "--prefix", name, "--channel-roles", "Customer,agent"
    )
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["channel_roles"] == ["customer", "agent"]
    changed = _keys(env, "roles", out["id"], "agent,customer,supervisor")
    assert changed.returncode == 0, changed.stderr
    key = await apikeys.get(api.pool, out["id"])
    assert key is not None and key.channel_roles == ("agent", "customer", "supervisor")
    assert _keys(env, "roles", out["id"], "default").returncode == 0
    key = await apikeys.get(api.pool, out["id"])
    assert key is not None and key.channel_roles is None
    refused = _keys(env, "roles", out["id"], "agent;drop")
    assert refused.returncode == 2 and "channel roles" in refused.stderr
    assert _keys(env, "roles", "nokey", "agent").returncode == 1
