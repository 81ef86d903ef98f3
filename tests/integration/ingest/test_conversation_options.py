"""The multichannel and channel_roles submit options: validated, stored on the job, carried by
its AudioStored event; every bad or hostile value is a 400 that stores nothing."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.fixtures.calls import CALL_STEREO
from tests.integration.ingest.conftest import Api, unique_prefix

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
