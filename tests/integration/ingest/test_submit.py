"""POST /api/media/transcribe: reference shapes and paths, recording lookup, and every 4xx."""

from __future__ import annotations

import io
import json
import uuid

import aiohttp
import pytest

from libs import apikeys
from tests.integration.ingest.conftest import (
    MAX_BYTES,
    OPUS,
    WAV,
    Api,
    Upstream,
    make_key,
    unique_prefix,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def recordings(api: Api, samples_url: str) -> dict[str, str]:
    """Source rows of our own (unique ids and locations), beside the demo seed."""
    tag = uuid.uuid4().hex[:8]
    ids = {
        "numeric": str(int(tag, 16) % 10**9 + 10**9),
        "text": f"rec-{tag}",
        "amb_a": f"amb-a-{tag}",
        "amb_b": f"amb-b-{tag}",
        "tag": tag,
    }
    rows = [
        (ids["numeric"], 2, "7", f"{samples_url}/n/{tag}/num/hello_campaign.wav"),
        (ids["text"], 1, "42", f"{samples_url}/calls/{tag}/loc-{tag}/hello_campaign.opus"),
        (ids["amb_a"], 1, "42", f"{samples_url}/dup/{tag}/A/hello_campaign.wav"),
        (ids["amb_b"], 1, "42", f"{samples_url}/dup/{tag}/B/hello_campaign.wav"),
    ]
    await api.pool.executemany(
        "INSERT INTO public.recordings (id, contact_id, campaign_id, location) "
        "VALUES ($1, $2, $3, $4)",
        rows,
    )
    return ids


# --- accepted ----------------------------------------------------------------------------------


async def test_url_submit_answers_the_reference_shape_and_path(
    api: Api, upstream: Upstream
) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit({"url": f"{upstream.url}/audio/a.wav", "b2_prefix": prefix})
    assert status == 200, body
    assert set(body) == {"audio_file_id", "status", "b2_key", "b2_url"}
    assert body["status"] == "QUEUED"
    file_id = body["audio_file_id"]
    # [<b2_prefix>/]<campaign>/audio/<phone>/<uuid>.<ext>, content sniffed (not the name).
    assert body["b2_key"] == f"{prefix}/unassigned/audio/unknown/{file_id}.wav"
    assert body["b2_url"].endswith(body["b2_key"])
    assert await api.objects(prefix) == [body["b2_key"]]
    (row,) = await api.rows(prefix)
    assert row["size_bytes"] == len(WAV)
    assert row["url_sha1"] is not None
    outbox = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
        f"%{file_id}%",
    )
    assert outbox == 1
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM media_pipeline.ingest_claims WHERE audio_file_id = $1",
            uuid.UUID(file_id),
        )
        == 0
    )


async def test_without_prefix_the_key_starts_at_the_campaign(api: Api, upstream: Upstream) -> None:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.opus"
    status, body, _ = await api.submit(
        {"url": url, "phone": "020 7946 0999", "campaign": "Spring Deals!"}
    )
    assert status == 200, body
    # GB is the fixture's DEFAULT_PHONE_REGION; campaign made path-safe; opus sniffed.
    assert body["b2_key"] == f"Spring_Deals/audio/442079460999/{body['audio_file_id']}.opus"


async def test_multipart_upload(api: Api) -> None:
    prefix = unique_prefix()
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    form.add_field("campaign", "uploads")
    form.add_field("file", OPUS, filename="call.bin", content_type="application/octet-stream")
    status, body, _ = await api.submit(form)
    assert status == 200, body
    assert body["b2_key"] == f"{prefix}/uploads/audio/unknown/{body['audio_file_id']}.opus"
    assert await api.objects(prefix) == [body["b2_key"]]


async def test_recording_id_exact_numeric(api: Api, recordings: dict[str, str]) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(
        {"recording_id": recordings["numeric"], "b2_prefix": prefix, "phone": "+15550000000"}
    )
    assert status == 200, body
    # Phone from public.contacts (id 2), campaign from campaign_map ("7" -> winback).
    assert body["b2_key"] == f"{prefix}/winback/audio/14155550132/{body['audio_file_id']}.wav"
    (row,) = await api.rows(prefix)
    assert row["recording_id"] == recordings["numeric"]
    assert row["source_row_id"] == int(recordings["numeric"])
    assert row["source_table"] == "public.recordings"
    assert row["campaign_id"] == "7"


async def test_recording_id_non_numeric_stays_text(api: Api, recordings: dict[str, str]) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit({"recording_id": recordings["text"], "b2_prefix": prefix})
    assert status == 200, body
    (row,) = await api.rows(prefix)
    assert row["recording_id"] == recordings["text"]
    assert row["source_row_id"] is None


async def test_recording_id_location_fallback(api: Api, recordings: dict[str, str]) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(
        {"recording_id": f"loc-{recordings['tag']}", "b2_prefix": prefix}
    )
    assert status == 200, body
    (row,) = await api.rows(prefix)
    assert row["recording_id"] == recordings["text"]
    assert body["b2_key"].startswith(f"{prefix}/spring_renewals/audio/442079460018/")


@pytest.mark.parametrize("rid", ["%", "_", "%%", "__%", "\\", "%hello%"])
async def test_like_wildcards_never_match(api: Api, rid: str) -> None:
    status, body, _ = await api.submit({"recording_id": rid, "b2_prefix": unique_prefix()})
    assert status == 404, body
    assert body["error"] == "recording_not_found"


async def test_ambiguous_location_is_409(api: Api, recordings: dict[str, str]) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit(
        {"recording_id": f"dup/{recordings['tag']}", "b2_prefix": prefix}
    )
    assert status == 409, body
    assert body["error"] == "ambiguous_recording"
    assert await api.rows(prefix) == []


async def test_same_url_same_tenant_returns_the_existing_job(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix()
    path = f"/audio/{uuid.uuid4().hex}.wav"
    first = await api.submit({"url": upstream.url + path, "b2_prefix": prefix})
    second = await api.submit({"url": upstream.url + path, "b2_prefix": prefix})
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert upstream.hits[path] == 1
    # Another prefix is another namespace: a new job.
    third = await api.submit({"url": upstream.url + path, "b2_prefix": unique_prefix()})
    assert third[1]["audio_file_id"] != first[1]["audio_file_id"]


async def test_idempotency_key_returns_the_same_job_for_uploads(api: Api) -> None:
    prefix = unique_prefix()
    key = uuid.uuid4().hex

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("b2_prefix", prefix)
        f.add_field("file", WAV, filename="a.wav")
        return f

    first = await api.submit(form(), headers={"Idempotency-Key": key})
    second = await api.submit(form(), headers={"Idempotency-Key": key})
    assert first[0] == second[0] == 200
    assert first[1]["audio_file_id"] == second[1]["audio_file_id"]
    assert len(await api.objects(prefix)) == 1


# --- 4xx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "exactly_one_source"),
        ({"b2_prefix": "x"}, "exactly_one_source"),
        ({"recording_id": "1001", "url": "http://example.com/a.wav"}, "exactly_one_source"),
        ({"recording_id": "   "}, "empty_recording_id"),
        ({"recording_id": ""}, "empty_recording_id"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "../etc"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "/abs"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "a/../b"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "a b"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "a//b"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "b2_prefix": "ü"}, "invalid_b2_prefix"),
        ({"url": "http://example.com/a.wav", "model": "gpt-5"}, "invalid_model"),
        ({"url": "http://example.com/a.wav", "language": "english!"}, "invalid_language"),
        ({"url": "http://example.com/a.wav", "timestamps": "chars"}, "invalid_timestamps"),
        ({"url": "http://example.com/a.wav", "prompt": "x" * 2001}, "invalid_prompt"),
        ({"url": "http://example.com/a.wav", "prompt": "names:\x00Acme"}, "invalid_field"),
        ({"url": "http://example.com/a.wav", "prompt": "two\nlines"}, "invalid_field"),
        (
            {"url": "http://example.com/a.wav", "callback_url": "http://169.254.169.254/hook"},
            "callback_url_",
        ),
    ],
)
async def test_bad_form_is_400(api: Api, data: dict[str, str], code: str) -> None:
    status, body, _ = await api.submit(data)
    assert status == 400, body
    assert body["error"].startswith(code)
    assert body["detail"]


async def test_too_long_idempotency_key_is_400(api: Api, upstream: Upstream) -> None:
    status, body, _ = await api.submit(
        {"url": f"{upstream.url}/audio/x.wav"}, headers={"Idempotency-Key": "k" * 201}
    )
    assert status == 400
    assert body["error"] == "invalid_idempotency_key"


async def test_two_file_parts_is_400(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("file", WAV, filename="a.wav")
    form.add_field("file", WAV, filename="b.wav")
    status, body, _ = await api.submit(form)
    assert status == 400
    assert body["error"] == "duplicate_file"


async def test_empty_upload_is_400(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"", filename="a.wav")
    status, body, _ = await api.submit(form)
    assert status == 400
    assert body["error"] == "empty_file"


async def test_file_and_url_together_is_400(api: Api, upstream: Upstream) -> None:
    form = aiohttp.FormData()
    form.add_field("url", f"{upstream.url}/audio/a.wav")
    form.add_field("file", WAV, filename="a.wav")
    status, body, _ = await api.submit(form)
    assert status == 400
    assert body["error"] == "exactly_one_source"


async def test_json_body_is_415(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", "/api/media/transcribe", json={"url": "http://example.com/a.wav"}
    )
    assert status == 415
    assert body["error"] == "unsupported_content_type"


async def test_missing_key_is_401(api: Api) -> None:
    status, body, _ = await api.submit({"recording_id": "1001"}, key=None)
    assert status == 401
    assert body["error"] == "missing_api_key"


async def test_wrong_key_is_401(api: Api) -> None:
    status, body, _ = await api.submit({"recording_id": "1001"}, key="tgw_not-a-key")
    assert status == 401
    assert body["error"] == "invalid_api_key"


async def test_revoked_key_is_401(api: Api) -> None:
    raw, key = await make_key(api.pool)
    async with api.pool.acquire() as conn:
        assert await apikeys.revoke(conn, key.id)
    status, _, _ = await api.request("GET", f"/api/media/status/{uuid.uuid4()}", key=raw)
    assert status == 401


async def test_tenant_key_cannot_write_outside_its_prefix(api: Api, upstream: Upstream) -> None:
    tenant = unique_prefix()
    raw, _ = await make_key(api.pool, tenant_prefix=tenant)
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "b2_prefix": "other"}, key=raw)
    assert status == 403, body
    assert body["error"] == "prefix_not_allowed"
    # Its own prefix (and areas under it) are fine; no prefix means its own.
    status, body, _ = await api.submit({"url": url}, key=raw)
    assert status == 200, body
    assert body["b2_key"].startswith(f"{tenant}/unassigned/audio/")
    status, body, _ = await api.submit({"url": url + "?x", "b2_prefix": f"{tenant}/sub"}, key=raw)
    assert status == 200, body


async def test_unknown_recording_is_404(api: Api) -> None:
    status, body, _ = await api.submit({"recording_id": f"nope-{uuid.uuid4().hex}"})
    assert status == 404
    assert body["error"] == "recording_not_found"


async def test_upload_over_the_limit_is_413_and_stores_nothing(api: Api) -> None:
    prefix = unique_prefix()
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    form.add_field("file", io.BytesIO(WAV[:4096] + b"\0" * MAX_BYTES), filename="a.wav")
    status, body, _ = await api.submit(form)
    assert status == 413, body
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []


@pytest.mark.parametrize("declared", [False, True])
async def test_download_over_the_limit_is_413_and_stores_nothing(
    api: Api, upstream: Upstream, declared: bool
) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/big?declared={'1' if declared else ''}&u={prefix}"
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 413, body
    assert body["error"] == "too_large"
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []


async def test_non_audio_download_is_415(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit({"url": f"{upstream.url}/text", "b2_prefix": prefix})
    assert status == 415, body
    assert body["error"] == "unsupported_media"
    assert await api.objects(prefix) == []


async def test_non_audio_upload_is_415(api: Api) -> None:
    prefix = unique_prefix()
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    form.add_field("file", b"%PDF-1.4 not audio" * 10, filename="a.wav", content_type="audio/wav")
    status, body, _ = await api.submit(form)
    assert status == 415, body
    assert await api.objects(prefix) == []


@pytest.mark.parametrize(("path", "code"), [("/status/404", "download_"), ("/empty", "empty_")])
async def test_failed_download_is_422(api: Api, upstream: Upstream, path: str, code: str) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit({"url": upstream.url + path, "b2_prefix": prefix})
    assert status == 422, body
    assert body["error"].startswith(code)
    assert await api.rows(prefix) == []


async def test_oversized_urlencoded_form_is_413(api: Api) -> None:
    status, body, _ = await api.request(
        "POST",
        "/api/media/transcribe",
        data=io.BytesIO(b"url=" + b"a" * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413, body
    assert body["error"] == "form_too_large"


async def test_overlong_multipart_field_is_400(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("campaign", "c" * 10_000, content_type="text/plain")
    form.add_field("file", WAV, filename="a.wav")
    status, body, _ = await api.submit(form)
    assert status == 400, body
    assert body["error"] == "field_too_long"


async def test_a_prompt_is_kept_with_the_job_and_sent_with_its_event(api: Api) -> None:
    prefix = unique_prefix()
    prompt = "Acme Telecom, Zoë Ngata, the SuperSaver 5G plan"
    form = aiohttp.FormData()
    form.add_field("b2_prefix", prefix)
    form.add_field("prompt", prompt)
    form.add_field("file", OPUS, filename="call.opus")
    status, body, _ = await api.submit(form)
    assert status == 200, body
    [row] = await api.rows(prefix)
    assert row["prompt"] == prompt
    payload = await api.pool.fetchval(
        "SELECT payload FROM media_pipeline.outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
        f"%{body['audio_file_id']}%",
    )
    event = json.loads(payload)
    assert (event["type"], event["prompt"]) == ("audio.stored", prompt)
