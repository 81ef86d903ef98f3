"""Tenants are isolated by default; Idempotency-Keys name one request."""

from __future__ import annotations

import hashlib
import uuid

import aiohttp
import pytest

from libs import apikeys
from libs.settings import Settings
from tests.integration.ingest.conftest import OPUS, WAV, Api, Upstream, make_key, unique_prefix
from tests.integration.ingest.test_docs_and_config import _cli

pytestmark = pytest.mark.integration

REPLAYED = "Idempotent-Replayed"


# --- tenants ------------------------------------------------------------------------------------


async def test_a_key_needs_a_prefix_unless_explicitly_unscoped(api: Api) -> None:
    async with api.pool.acquire() as conn:
        with pytest.raises(apikeys.InvalidKeySettings, match="--unscoped"):
            await apikeys.create(conn, name="no-prefix")
        with pytest.raises(apikeys.InvalidKeySettings, match="not both"):
            await apikeys.create(conn, name="both", tenant_prefix="acme", unscoped=True)
        _, key = await apikeys.create(conn, name="operator", unscoped=True)
    assert key.tenant_prefix == "" and not key.is_bootstrap


async def test_keys_cli_refuses_a_key_without_prefix_unless_unscoped(
    ingest_settings: Settings,
) -> None:
    refused = _cli(ingest_settings, "create", "--name", f"n-{uuid.uuid4().hex[:6]}")
    assert refused.returncode == 2
    assert "--unscoped" in refused.stderr
    created = _cli(ingest_settings, "create", "--name", f"op-{uuid.uuid4().hex[:6]}", "--unscoped")
    assert created.returncode == 0, created.stderr
    assert '"tenant_prefix": ""' in created.stdout


async def test_a_tenant_key_never_writes_under_another_prefix(api: Api, upstream: Upstream) -> None:
    tenant = unique_prefix()
    raw, _ = await make_key(api.pool, tenant_prefix=tenant)
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    # A sibling whose name starts with ours is another tenant, as is the root.
    for other in (f"{tenant}x", f"{tenant}-b/sub", "gateway", unique_prefix()):
        status, body, _ = await api.submit({"url": url, "b2_prefix": other}, key=raw)
        assert status == 403, (other, body)
        assert body["error"] == "prefix_not_allowed"
    status, body, _ = await api.submit({"url": url, "b2_prefix": f"{tenant}/east"}, key=raw)
    assert status == 200, body
    assert body["b2_key"].startswith(f"{tenant}/east/")


async def test_tenant_transcripts_live_under_the_tenant_and_the_operators_keep_the_reference(
    api: Api, upstream: Upstream
) -> None:
    tenant = unique_prefix()
    raw, _ = await make_key(api.pool, tenant_prefix=tenant)
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "b2_prefix": f"{tenant}/east"}, key=raw)
    assert status == 200, body
    (row,) = await api.rows(f"{tenant}/east")
    assert row["transcript_prefix"] == f"{tenant}/east"
    # The bootstrap key (the reference's API_KEY) writing under any prefix: reference layout.
    prefix = unique_prefix()
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 200, body
    (row,) = await api.rows(prefix)
    assert row["transcript_prefix"] == ""


@pytest.fixture(scope="module")
async def located(api: Api, samples_url: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    rows = [
        (f"tn-one-{tag}", f"{samples_url}/tn/{tag}/only-{tag}/hello_campaign.wav"),
        (f"tn-a-{tag}", f"{samples_url}/tndup/{tag}/A/hello_campaign.wav"),
        (f"tn-b-{tag}", f"{samples_url}/tndup/{tag}/B/hello_campaign.wav"),
    ]
    await api.pool.executemany(
        "INSERT INTO public.recordings (id, contact_id, campaign_id, location) "
        "VALUES ($1, 1, '42', $2)",
        rows,
    )
    return {"tag": tag, "exact": rows[0][0]}


async def test_a_tenant_key_finds_recordings_only_by_their_exact_id(
    api: Api, located: dict[str, str]
) -> None:
    tenant = unique_prefix()
    raw, _ = await make_key(api.pool, tenant_prefix=tenant)
    tag = located["tag"]
    # A part of a location: the operator's key finds it, a tenant's guess finds nothing.
    status, body, _ = await api.submit({"recording_id": f"only-{tag}"}, key=raw)
    assert status == 404, body
    assert body["error"] == "recording_not_found"
    status, body, _ = await api.submit({"recording_id": f"only-{tag}", "b2_prefix": tenant})
    assert status == 200, body
    # A substring matching several recordings is no 409 for a tenant: nothing to enumerate.
    status, body, _ = await api.submit({"recording_id": f"tndup/{tag}"}, key=raw)
    assert status == 404, body
    status, body, _ = await api.submit({"recording_id": f"tndup/{tag}", "b2_prefix": tenant})
    assert status == 409, body
    assert body["error"] == "ambiguous_recording"
    # The detail names only what the caller sent, never the recordings it matched.
    assert "/A/" not in body["detail"] and "tn-a-" not in body["detail"]
    # Even the exact id of a recording that is not under the tenant's prefix finds nothing.
    status, body, _ = await api.submit({"recording_id": located["exact"]}, key=raw)
    assert (status, body["error"]) == (404, "recording_not_found"), body


async def test_a_tenant_finds_only_recordings_under_its_prefix(api: Api, samples_url: str) -> None:
    """The recordings database has no tenant column: a recording is a tenant's when its id
    starts with `<tenant prefix>/`. Key A never reaches key B's recording, by id or by URL."""
    (raw_a, key_a), (raw_b, key_b) = [await make_key(api.pool) for _ in range(2)]
    tag = uuid.uuid4().hex[:8]
    ids = {k.tenant_prefix: f"{k.tenant_prefix}/rec-{tag}" for k in (key_a, key_b)}
    locations = {t: f"{samples_url}/tenants/{t}/{tag}/hello_campaign.wav" for t in ids}
    await api.pool.executemany(
        "INSERT INTO public.recordings (id, contact_id, campaign_id, location) "
        "VALUES ($1, 1, '42', $2)",
        [(ids[t], locations[t]) for t in ids],
    )
    phone = await api.pool.fetchval("SELECT phone FROM public.contacts WHERE id = 1")
    a, b = key_a.tenant_prefix, key_b.tenant_prefix
    # Its own: found, with the recording's data.
    status, body, _ = await api.submit({"recording_id": ids[a]}, key=raw_a)
    assert status == 200, body
    assert body["b2_key"].startswith(f"{a}/")
    # B's, by exact id, and by ids that merely start alike: as if they did not exist.
    for rid in (ids[b], f"{a}x/rec-{tag}", f"{b}/rec-{tag}", f"/{ids[a]}"):
        status, body, _ = await api.submit({"recording_id": rid}, key=raw_a)
        assert (status, body["error"]) == (404, "recording_not_found"), (rid, body)
    assert [r["recording_id"] for r in await api.rows(a)] == [ids[a]]
    # B's location as a URL is fetched as a plain URL: B's recording lends it nothing.
    status, body, _ = await api.submit({"url": locations[b]}, key=raw_a)
    assert status == 200, body
    row = await api.pool.fetchrow(
        "SELECT recording_id, phone, campaign_name FROM media_pipeline.audio_files WHERE id = $1",
        uuid.UUID(body["audio_file_id"]),
    )
    assert (row["recording_id"], row["campaign_name"]) == (None, "unassigned")
    assert phone is None or row["phone"] != phone
    # The same URL from its own tenant takes the recording's data; the operator sees every one.
    status, body, _ = await api.submit({"url": locations[b]}, key=raw_b)
    assert status == 200, body
    assert (await api.rows(b))[0]["recording_id"] == ids[b]
    status, body, _ = await api.submit({"recording_id": ids[b], "b2_prefix": unique_prefix()})
    assert status == 200, body


# --- idempotency -------------------------------------------------------------------------------


async def test_same_key_same_request_replays_the_job_with_a_header(
    api: Api, upstream: Upstream
) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    idem = {"Idempotency-Key": uuid.uuid4().hex}
    form = {"url": url, "b2_prefix": prefix, "model": "whisper-1", "language": "en"}
    status, first, headers = await api.submit(form, headers=idem)
    assert status == 200, first
    assert REPLAYED not in headers
    status, again, headers = await api.submit(form, headers=idem)
    assert status == 200, again
    assert again == first
    assert headers[REPLAYED] == "true"
    (row,) = await api.rows(prefix)
    assert row["idempotency_key"] == idem["Idempotency-Key"]
    assert row["request_sha256"] is not None and len(row["request_sha256"]) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"url": "other"},
        {"model": "gpt-4o-transcribe"},
        {"language": "de"},
        {"timestamps": "word"},
        {"b2_prefix": "other"},
        {"campaign": "another"},
    ],
    ids=lambda c: next(iter(c)),
)
async def test_same_key_different_request_is_422(
    api: Api, upstream: Upstream, change: dict[str, str]
) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    idem = {"Idempotency-Key": uuid.uuid4().hex}
    form = {"url": url, "b2_prefix": prefix, "model": "whisper-1", "language": "en"}
    status, first, _ = await api.submit(form, headers=idem)
    assert status == 200, first
    changed = dict(form)
    for name, value in change.items():
        changed[name] = {
            "url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav",
            "b2_prefix": unique_prefix(),
        }.get(value, value)
    status, body, headers = await api.submit(changed, headers=idem)
    assert status == 422, body
    assert body["error"] == "idempotency_key_reused"
    assert REPLAYED not in headers
    # Nothing was downloaded or stored for the refused request.
    assert len(await api.rows(prefix)) == 1
    if "b2_prefix" in change:
        assert await api.rows(changed["b2_prefix"]) == []


async def test_same_key_with_another_upload_is_422_and_the_same_upload_replays(api: Api) -> None:
    prefix = unique_prefix()
    idem = {"Idempotency-Key": uuid.uuid4().hex}

    def form(content: bytes) -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("b2_prefix", prefix)
        f.add_field("file", content, filename="call.bin")
        return f

    status, first, _ = await api.submit(form(WAV), headers=idem)
    assert status == 200, first
    status, again, headers = await api.submit(form(WAV), headers=idem)
    assert (status, again["audio_file_id"], headers[REPLAYED]) == (
        200,
        first["audio_file_id"],
        "true",
    )
    status, body, _ = await api.submit(form(OPUS), headers=idem)
    assert status == 422, body
    assert body["error"] == "idempotency_key_reused"
    (row,) = await api.rows(prefix)
    assert row["sha256"] == hashlib.sha256(WAV).hexdigest()
    assert len(await api.objects(prefix)) == 1


async def test_an_identical_url_says_it_is_the_existing_job(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, first, headers = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 200 and REPLAYED not in headers
    status, again, headers = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 200 and again == first
    assert headers[REPLAYED] == "true"


async def test_a_different_callback_on_an_existing_job_is_reported_not_dropped_silently(
    api: Api, upstream: Upstream
) -> None:
    prefix = unique_prefix()
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    hook_a, hook_b = f"{upstream.url}/hook/a", f"{upstream.url}/hook/b"
    status, first, _ = await api.submit({"url": url, "b2_prefix": prefix, "callback_url": hook_a})
    assert status == 200, first
    # The same callback (or none): the plain replay.
    for form in (
        {"url": url, "b2_prefix": prefix, "callback_url": hook_a},
        {"url": url, "b2_prefix": prefix},
    ):
        status, body, headers = await api.submit(form)
        assert status == 200 and body == first and headers[REPLAYED] == "true"
    # Another callback: the existing job, saying its callback was kept.
    status, body, headers = await api.submit(
        {"url": url, "b2_prefix": prefix, "callback_url": hook_b}
    )
    assert status == 200, body
    assert headers[REPLAYED] == "true"
    assert body["audio_file_id"] == first["audio_file_id"]
    assert body["callback_url_ignored"] is True
    assert "callback_url" in body["detail"]
    (row,) = await api.rows(prefix)
    assert row["callback_url"] == hook_a
    # With an Idempotency-Key too: the callback is not part of the fingerprint, it is reported.
    idem = {"Idempotency-Key": uuid.uuid4().hex}
    url2 = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, first2, _ = await api.submit(
        {"url": url2, "b2_prefix": prefix, "callback_url": hook_a}, headers=idem
    )
    assert status == 200, first2
    status, body, headers = await api.submit(
        {"url": url2, "b2_prefix": prefix, "callback_url": hook_b}, headers=idem
    )
    assert status == 200 and body["callback_url_ignored"] is True, body
    assert body["audio_file_id"] == first2["audio_file_id"]
