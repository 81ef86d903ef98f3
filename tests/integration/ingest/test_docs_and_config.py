"""/openapi.json and /docs; LOOKUP_SQL_FILE validated at start; `transcribe keys`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from libs.settings import Settings, SettingsError
from tests.integration.ingest.conftest import Api, serve_api, unique_prefix

pytestmark = pytest.mark.integration


async def test_openapi_is_valid_and_describes_every_route(api: Api) -> None:
    status, spec, _ = await api.request("GET", "/openapi.json", key=None)
    assert status == 200
    validate(spec)
    async with api.session.get(api.base_url + "/openapi.json") as resp:
        assert resp.content_type == "application/json"
    for path, method in [
        ("/api/media/transcribe", "post"),
        ("/api/media/status/{audio_file_id}", "get"),
        ("/api/media/rerun/{audio_file_id}", "post"),
        ("/api/media/transcript/{audio_file_id}.{fmt}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/docs", "get"),
    ]:
        assert method in spec["paths"][path], path
    submit = spec["paths"]["/api/media/transcribe"]["post"]
    form = submit["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    # The reference troubleshooting step: /openapi.json shows recording_id and url.
    assert {"recording_id", "url", "b2_prefix", "phone", "campaign", "campaign_id"} <= set(
        form["properties"]
    )
    for code in ("400", "401", "403", "404", "409", "413", "415", "422", "429", "503"):
        assert code in submit["responses"], code


async def test_every_registered_route_is_in_the_document(api: Api) -> None:
    from services.ingest.app import create_app

    app = create_app(api.settings)
    _, spec, _ = await api.request("GET", "/openapi.json", key=None)
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        assert route.method.lower() in spec["paths"][route.resource.canonical]


async def test_docs_page_is_served_offline(api: Api) -> None:
    async with api.session.get(api.base_url + "/docs") as resp:
        assert resp.status == 200
        page = await resp.text()
    # Nothing is loaded from another origin: every src/href is a local path.
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(r.startswith("/docs/") for r in refs), refs
    assert "/openapi.json" in page
    for ref in refs:
        async with api.session.get(api.base_url + ref) as resp:
            assert resp.status == 200, ref
            assert len(await resp.read()) > 100
    async with api.session.get(api.base_url + "/docs/index.j2") as resp:
        assert resp.status == 404


LOOKUP_SQL = """
-- A source schema that is not the reference one: calls(call_ref, media_url, msisdn, camp)
-- name: by_id
SELECT c.call_ref AS recording_id, c.media_url AS url, c.msisdn AS phone,
       c.camp AS campaign_name
FROM {table} c WHERE c.call_ref = $1 LIMIT 2;

-- name: by_location
SELECT c.call_ref AS recording_id, c.media_url AS url, c.msisdn AS phone,
       c.camp AS campaign_name
FROM {table} c WHERE c.media_url LIKE ('%' || $1 || '%') ESCAPE '\\' LIMIT 2;
"""


async def test_custom_lookup_sql_is_used(
    api: Api, ingest_settings: Settings, samples_url: str, tmp_path: Path
) -> None:
    table = f"calls_{uuid.uuid4().hex[:8]}"
    await api.pool.execute(
        f"CREATE TABLE public.{table} (call_ref text, media_url text, msisdn text, camp text)"
    )
    await api.pool.execute(
        f"INSERT INTO public.{table} VALUES ('CR-1', $1, '+1 415 555 0199', 'autumn')",
        f"{samples_url}/x/{table}/hello_campaign.wav",
    )
    sql_file = tmp_path / "lookup.sql"
    sql_file.write_text(LOOKUP_SQL.format(table=f"public.{table}"))
    custom = replace(ingest_settings, lookup_sql_file=sql_file)
    async with serve_api(custom) as served:
        prefix = unique_prefix()
        status, body, _ = await served.submit({"recording_id": "CR-1", "b2_prefix": prefix})
        assert status == 200, body
        assert body["b2_key"].startswith(f"{prefix}/autumn/audio/14155550199/")
        status, body, _ = await served.submit({"recording_id": table, "b2_prefix": prefix})
        assert status == 200, body  # the location fallback of the custom file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1", "before the first"),
        ("-- name: by_location\nSELECT 1 AS recording_id, 'x' AS url WHERE $1 = ''", "by_id"),
        ("-- name: by_id\n", "empty"),
        ("-- name: nope\nSELECT 1", "unknown query"),
        ("-- name: by_id\nSELECT FROM WHERE", "does not prepare"),
        ("-- name: by_id\nSELECT 'a' AS recording_id, 'u' AS url", "exactly one parameter"),
        ("-- name: by_id\nSELECT $1::text AS id, 'u' AS url", "recording_id"),
        (
            "-- name: by_id\nSELECT 1 AS recording_id, 'u' AS url FROM public.no_such WHERE $1 = ''",
            "does not prepare",
        ),
    ],
)
async def test_bad_lookup_sql_stops_the_service_at_start(
    ingest_settings: Settings, tmp_path: Path, text: str, message: str
) -> None:
    sql_file = tmp_path / "lookup.sql"
    sql_file.write_text(text)
    with pytest.raises(SettingsError, match=message):
        async with serve_api(replace(ingest_settings, lookup_sql_file=sql_file)):
            pass


async def test_missing_lookup_file_stops_the_service(ingest_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        async with serve_api(replace(ingest_settings, lookup_sql_file=Path("/nonexistent.sql"))):
            pass


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.require_database_url(),
        "HOME": "/tmp",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "transcribe"), "--log-format", "console", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_keys_cli_create_list_revoke(api: Api, ingest_settings: Settings) -> None:
    name = f"acme-{uuid.uuid4().hex[:6]}"
    created = _cli(
        ingest_settings,
        "create",
        "--name",
        name,
        "--prefix",
        "acme/calls",
        "--rate-limit",
        "60",
        "--webhook-url",
        "https://hooks.example.com/t",
    )
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["api_key"].startswith("tgw_")
    assert out["webhook_secret"].startswith("whsec_")
    assert out["tenant_prefix"] == "acme/calls"
    # Stored hashed: the raw key is nowhere in the table.
    stored = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.api_keys WHERE key_hash = $1 OR key_hint = $1",
        out["api_key"],
    )
    assert stored == 0
    status, _, _ = await api.request("GET", f"/api/media/status/{uuid.uuid4()}", key=out["api_key"])
    assert status == 404  # authenticated, and no such job

    listed = _cli(ingest_settings, "list")
    assert listed.returncode == 0
    assert name in listed.stdout and out["api_key"] not in listed.stdout

    revoked = _cli(ingest_settings, "revoke", out["id"])
    assert revoked.returncode == 0, revoked.stderr
    status, _, _ = await api.request("GET", f"/api/media/status/{uuid.uuid4()}", key=out["api_key"])
    assert status == 401


@pytest.mark.parametrize(
    "args",
    [
        ["--prefix", "../etc"],
        ["--prefix", "/root"],
        ["--prefix", "a b"],
        ["--rate-limit", "0"],
        ["--webhook-url", "https://h.example.com", "--webhook-secret", "plain"],
    ],
)
async def test_keys_cli_refuses_bad_settings(ingest_settings: Settings, args: list[str]) -> None:
    result = _cli(ingest_settings, "create", "--name", "bad", *args)
    assert result.returncode == 2
    assert "cannot create the key" in result.stderr


async def test_keys_are_hashed_at_rest(api: Api) -> None:
    rows = await api.pool.fetch("SELECT key_hash FROM media_pipeline.api_keys")
    assert rows and all(re.fullmatch(r"[0-9a-f]{64}", r["key_hash"]) for r in rows)
