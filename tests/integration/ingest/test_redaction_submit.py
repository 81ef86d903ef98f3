"""The redact form fields on real Postgres and S3: stored on the job and carried in AudioStored,
the key's policy as a floor, every bad value a 4xx with nothing stored."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from libs import apikeys
from libs.redaction import Policy
from tests.integration.ingest.conftest import WAV, Api, make_key

pytestmark = pytest.mark.integration

PCI = Policy.parse("pci").spec


def _upload(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", WAV, filename="call.wav", content_type="audio/wav")
    return form


async def _job(api: Api, audio_file_id: str) -> tuple[str, dict[str, Any]]:
    row = await api.pool.fetchrow(
        "SELECT redact FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(audio_file_id)
    )
    assert row is not None
    payload = await api.pool.fetchval(
        "SELECT convert_from(payload, 'UTF8') FROM media_pipeline.outbox "
        "WHERE convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
        audio_file_id,
    )
    return row["redact"], json.loads(payload)


async def test_job_policy_is_stored_and_carried_in_the_event(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.submit(
        _upload(redact="pci, email", redact_substitution="last4"), key=raw
    )
    assert status == 200, body
    redact, event = await _job(api, body["audio_file_id"])
    assert redact == "credit_card,cvv,email,expiry;substitution=last4;keep=redacted"
    assert event["type"] == "audio.stored" and event["redact"] == redact


async def test_key_default_applies_without_fields_and_is_a_floor(api: Api) -> None:
    raw, key = await make_key(api.pool, redact=PCI)
    status, body, _ = await api.submit(_upload(), key=raw)
    assert status == 200, body
    assert (await _job(api, body["audio_file_id"]))[0] == PCI
    # A job adds classes to the floor and picks its substitution...
    status, body, _ = await api.submit(_upload(redact="phone", redact_substitution="mask"), key=raw)
    assert status == 200, body
    assert (await _job(api, body["audio_file_id"]))[0] == (
        "credit_card,cvv,expiry,phone;substitution=mask;keep=redacted"
    )
    # ...but cannot switch it off nor keep the original.
    for fields in ({"redact": "none"}, {"redact": "pci", "redact_keep": "both"}):
        before = len(await api.objects(key.tenant_prefix))
        status, body, _ = await api.submit(_upload(**fields), key=raw)
        assert (status, body["error"]) == (403, "redaction_required"), fields
        assert len(await api.objects(key.tenant_prefix)) == before


async def test_audio_redaction_is_asked_per_job_or_required_by_the_key(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.submit(_upload(redact="pci", redact_audio="silence"), key=raw)
    assert status == 200, body
    assert (await _job(api, body["audio_file_id"]))[0].endswith(";audio=silence")
    raw, _ = await make_key(api.pool, redact=Policy.parse("pci", audio="beep").spec)
    status, body, _ = await api.submit(_upload(redact_audio="none"), key=raw)
    assert (status, body["error"]) == (403, "redaction_required")
    status, body, _ = await api.submit(_upload(redact_audio="loud"), key=raw)
    assert (status, body["error"]) == (400, "invalid_redact")


async def test_without_any_policy_the_job_has_none(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.submit(_upload(), key=raw)
    assert status == 200, body
    redact, event = await _job(api, body["audio_file_id"])
    assert redact == "" and event["redact"] == ""


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"redact": "pci,visa"}, "invalid_redact"),
        ({"redact": "none,pci"}, "invalid_redact"),
        ({"redact": "pci," * 80}, "invalid_redact"),
        ({"redact": "pci", "redact_substitution": "hash"}, "invalid_redact"),
        ({"redact": "pci", "redact_keep": "nothing"}, "invalid_redact"),
        ({"redact_keep": "both"}, "invalid_redact"),
        ({"redact": "pci\x00"}, "invalid_field"),
        ({"redact": "pci\x1b[2J"}, "invalid_field"),
        ({"redact_substitution": "mask\x07"}, "invalid_field"),
    ],
)
async def test_bad_redact_values_are_400_and_store_nothing(
    api: Api, fields: dict[str, str], code: str
) -> None:
    raw, key = await make_key(api.pool)
    status, body, _ = await api.submit(_upload(**fields), key=raw)
    assert (status, body["error"]) == (400, code), body
    assert "\x00" not in body["detail"] and "\x1b" not in body["detail"]
    assert await api.objects(key.tenant_prefix) == []
    assert await api.rows(key.tenant_prefix) == []


async def test_non_utf8_redact_is_400(api: Api) -> None:
    raw, key = await make_key(api.pool)
    status, body, _ = await api.submit(
        b"url=http%3A%2F%2Fexample.com%2Fa.wav&redact=pci%FF",
        key=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400, body
    assert await api.rows(key.tenant_prefix) == []


async def test_idempotent_retries_survive_a_policy_change_but_not_other_redact_fields(
    api: Api,
) -> None:
    raw, key = await make_key(api.pool)
    headers = {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    status, first, _ = await api.submit(_upload(redact="pci"), key=raw, headers=headers)
    assert status == 200, first
    # The operator switches on a tenant default in between: the retry is the same request.
    async with api.pool.acquire() as conn:
        assert await apikeys.set_redact(conn, key.id, Policy.parse("pii").spec)
    status, again, _ = await api.submit(_upload(redact="pci"), key=raw, headers=headers)
    assert (status, again["audio_file_id"]) == (200, first["audio_file_id"])
    # The same key with other redact fields is another request.
    status, body, _ = await api.submit(_upload(redact="pci,email"), key=raw, headers=headers)
    assert (status, body["error"]) == (422, "idempotency_key_reused")


CARD_GROUPS = ("4539", "1488", "0343", "6467")  # 4539 1488 0343 6467 passes the Luhn check


@pytest.mark.parametrize("where", ["key", "job"])
async def test_the_prompt_is_redacted_before_it_is_stored_or_sent(api: Api, where: str) -> None:
    raw, _ = await make_key(api.pool, redact=PCI if where == "key" else "")
    prompt = f"Billing call; card {' '.join(CARD_GROUPS)} mentioned. Names: Okafor, Lindqvist."
    fields = {"prompt": prompt} | ({"redact": "pci"} if where == "job" else {})
    status, body, _ = await api.submit(_upload(**fields), key=raw)
    assert status == 200, body
    file_id = body["audio_file_id"]
    stored = await api.pool.fetchval(
        "SELECT prompt FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(file_id)
    )
    _, event = await _job(api, file_id)
    _, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=raw)
    assert (
        stored
        == event["prompt"]
        == ("Billing call; card [CREDIT_CARD] mentioned. Names: Okafor, Lindqvist.")
    )
    for text in (stored, json.dumps(event), json.dumps(body), json.dumps(shown)):
        assert not any(group in text for group in CARD_GROUPS), text
    # A rerun announces the job from its row: the prompt stays redacted.
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'completed' WHERE id = $1",
        uuid.UUID(file_id),
    )
    status, _, _ = await api.request("POST", f"/api/media/rerun/{file_id}", key=raw)
    assert status == 200
    payloads = await api.pool.fetch(
        "SELECT convert_from(payload, 'UTF8') AS p FROM media_pipeline.outbox "
        "WHERE convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
        file_id,
    )
    assert len(payloads) == 2
    assert not any(g in r["p"] for r in payloads for g in CARD_GROUPS)


async def test_without_a_policy_the_prompt_is_kept_as_sent(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    prompt = "Order 4539 1488 0343 6467"
    status, body, _ = await api.submit(_upload(prompt=prompt), key=raw)
    assert status == 200, body
    _, event = await _job(api, body["audio_file_id"])
    assert event["prompt"] == prompt
