"""Inputs that cannot be stored are refused at submit, with a 400 naming the field: never a 503
`storage_refused` from the object store, never a download first."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.ingest.conftest import Api, Upstream, unique_prefix

pytestmark = pytest.mark.integration

LIMITS = {
    "recording_id": 256,
    "url": 4096,
    "callback_url": 2048,
    "phone": 64,
    "campaign": 256,
    "campaign_id": 256,
    "company": 256,
}


@pytest.mark.parametrize("field", sorted(LIMITS))
async def test_a_field_too_long_to_store_is_400_naming_it(
    api: Api, upstream: Upstream, field: str
) -> None:
    prefix = unique_prefix()
    path = f"/audio/{uuid.uuid4().hex}.wav"
    form = {"url": upstream.url + path, "b2_prefix": prefix}
    too_long = "x" * (LIMITS[field] + 1)
    if field == "recording_id":
        form = {"recording_id": too_long, "b2_prefix": prefix}
    elif field in ("url", "callback_url"):
        form[field] = f"{upstream.url}/audio/{too_long}.wav"
    else:
        form[field] = too_long
    status, body, _ = await api.submit(form)
    assert status == 400, body
    assert body["error"] == "field_too_long"
    assert field in body["detail"]
    # Refused before anything happened: no download, no object, no row, no claim left.
    assert upstream.hits[path] == 0
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []


async def test_multibyte_values_are_counted_in_bytes(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    # 100 characters, 300 bytes of UTF-8.
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix, "company": "€" * 100})
    assert status == 400, body
    assert body["error"] == "field_too_long" and "company" in body["detail"]
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix, "company": "€" * 80})
    assert status == 200, body


async def test_a_database_campaign_making_the_key_too_long_is_400_before_download(
    api: Api, samples_url: str
) -> None:
    """The campaign comes from the customer's database, so only the whole key can be checked:
    S3 would refuse a key over 1024 bytes (a 503 and an operator alarm)."""
    tag = uuid.uuid4().hex[:8]
    campaign_id = f"long-{tag}"
    rid = f"rec-long-{tag}"
    await api.pool.execute(
        "INSERT INTO public.campaign_map (campaign_id, campaign_name) VALUES ($1, $2)",
        campaign_id,
        "c" * 1100,
    )
    await api.pool.execute(
        "INSERT INTO public.recordings (id, contact_id, campaign_id, location) "
        "VALUES ($1, 1, $2, $3)",
        rid,
        campaign_id,
        f"{samples_url}/long/{tag}/hello_campaign.wav",
    )
    prefix = unique_prefix()
    status, body, _ = await api.submit({"recording_id": rid, "b2_prefix": prefix})
    assert status == 400, body
    assert body["error"] == "object_key_too_long"
    assert "campaign" in body["detail"] and "1024" in body["detail"]
    assert await api.objects(prefix) == []
    assert await api.rows(prefix) == []


async def test_the_longest_storable_values_are_accepted(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix() + "/" + "p" * 150
    status, body, _ = await api.submit(
        {
            "url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav",
            "b2_prefix": prefix,
            "campaign": "c" * 256,
            "company": "k" * 256,
            "phone": "+1 415 555 0132",
        }
    )
    assert status == 200, body
    assert len(body["b2_key"].encode()) <= 1024
    assert await api.objects(prefix) == [body["b2_key"]]
