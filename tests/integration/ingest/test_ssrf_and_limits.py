"""The SSRF guard at the API, and the per-key rate limit."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.ingest.conftest import Api, Upstream, make_key, unique_prefix
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.wav",
        "file:///etc/passwd",
        "http://user:pass@example.com/a.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/a.wav",
        "http://0x7f000001/a.wav",
        "http://2130706433/a.wav",
        "http://100.64.0.1/a.wav",
        "http://224.0.0.1/a.wav",
        "http://0.0.0.0/a.wav",
        "http://[fd00::1]/a.wav",
        "not a url",
    ],
)
async def test_forbidden_urls_are_400_before_any_connection(api: Api, url: str) -> None:
    prefix = unique_prefix()
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 400, body
    assert body["error"].startswith("url_")
    assert await api.rows(prefix) == []


async def test_loopback_port_not_in_the_allowlist_is_400(api: Api) -> None:
    status, body, _ = await api.submit({"url": f"http://127.0.0.1:{free_port()}/a.wav"})
    assert status == 400, body


async def test_localhost_name_is_400(api: Api, upstream: Upstream) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    status, body, _ = await api.submit({"url": f"http://localhost:{port}/audio/a.wav"})
    assert status == 400, body


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:{port}/audio/a.wav", "http://169.254.169.254/latest/meta-data/"],
)
async def test_redirect_from_an_allowed_host_to_a_blocked_one_is_400(
    api: Api, upstream: Upstream, target: str
) -> None:
    prefix = unique_prefix()
    blocked = target.format(port=free_port())
    url = f"{upstream.url}/redirect?to={blocked}&u={uuid.uuid4().hex}"
    status, body, _ = await api.submit({"url": url, "b2_prefix": prefix})
    assert status == 400, body
    assert body["error"].startswith("url_")
    assert upstream.hits["/redirect"] >= 1
    assert await api.rows(prefix) == []
    assert await api.objects(prefix) == []


async def test_redirect_within_allowed_hosts_is_followed(api: Api, upstream: Upstream) -> None:
    prefix = unique_prefix()
    target = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit(
        {"url": f"{upstream.url}/redirect?to={target}", "b2_prefix": prefix}
    )
    assert status == 200, body
    assert body["b2_key"].endswith(".wav")


async def test_rate_limited_key_gets_429_with_retry_after(api: Api) -> None:
    raw, _ = await make_key(api.pool, rate_limit_per_minute=3)
    missing = f"/api/media/status/{uuid.uuid4()}"
    statuses = [(await api.request("GET", missing, key=raw))[0] for _ in range(3)]
    assert statuses == [404, 404, 404]
    status, body, headers = await api.request("GET", missing, key=raw)
    assert status == 429, body
    assert body["error"] == "rate_limited"
    # 3 a minute: one token every 20 s.
    assert 1 <= int(headers["Retry-After"]) <= 20
    # Another key is not affected, and the bootstrap key (no limit) never is.
    other, _ = await make_key(api.pool, rate_limit_per_minute=3)
    assert (await api.request("GET", missing, key=other))[0] == 404
    for _ in range(10):
        assert (await api.request("GET", missing))[0] == 404


async def test_the_bucket_refills(api: Api) -> None:
    raw, key = await make_key(api.pool, rate_limit_per_minute=2)
    missing = f"/api/media/status/{uuid.uuid4()}"
    for _ in range(2):
        assert (await api.request("GET", missing, key=raw))[0] == 404
    assert (await api.request("GET", missing, key=raw))[0] == 429
    # Pretend 30 s passed (one token at 2/min) rather than waiting for them.
    await api.pool.execute(
        "UPDATE media_pipeline.rate_buckets SET updated_at = updated_at - interval '30 seconds' "
        "WHERE api_key_id = $1",
        uuid.UUID(key.id),
    )
    assert (await api.request("GET", missing, key=raw))[0] == 404
    assert (await api.request("GET", missing, key=raw))[0] == 429
