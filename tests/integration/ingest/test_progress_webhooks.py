"""Opt-in `transcription.progress` webhooks: a key turns them on (API or CLI), the notifier then
schedules one delivery per JobProgress event (webhook-id = event id) for a running job, and none
for keys that did not opt in or jobs no longer running."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from libs.contracts import JobProgress, new_event_id, utcnow
from libs.settings import Settings
from services.notifier.worker import Scheduler
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.ingest.test_keys_cli import _cli

pytestmark = pytest.mark.integration


def _progress(file_id: str, tenant: str) -> JobProgress:
    return JobProgress(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=file_id,
        tenant=tenant,
        stage="transcribing",
        fraction=0.25,
        chunk=1,
        chunks=4,
    )


async def test_progress_webhooks_are_opt_in_per_key(api: Api, upstream: Upstream) -> None:
    raw, key = await make_key(api.pool, webhook_url=f"{upstream.url}/hook")
    status, body, _ = await api.submit(
        {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"}, key=raw
    )
    assert status == 200, body
    file_id = str(body["audio_file_id"])
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'processing' WHERE id = $1",
        uuid.UUID(file_id),
    )
    scheduler = Scheduler(api.pool, public_base_url="http://gateway.test")
    assert await scheduler.schedule(_progress(file_id, key.tenant_prefix)) == 0  # not opted in

    for bad in ("maybe", ""):
        status, err, _ = await api.request(
            "PUT", f"/api/webhooks/endpoint/progress?enabled={bad}", key=raw
        )
        assert status == 400, err
    status, endpoint, _ = await api.request(
        "PUT", "/api/webhooks/endpoint/progress?enabled=true", key=raw
    )
    assert status == 200 and endpoint["progress"] is True
    event = _progress(file_id, key.tenant_prefix)
    assert await scheduler.schedule(event) == 1
    row = await api.pool.fetchrow(
        "SELECT event_type, payload FROM media_pipeline.webhook_deliveries WHERE event_id = $1",
        uuid.UUID(event.event_id),
    )
    assert row["event_type"] == "transcription.progress"
    sent = msgspec.json.decode(row["payload"])
    assert sent["type"] == "transcription.progress"
    assert (sent["data"]["stage"], sent["data"]["chunk"], sent["data"]["chunks"]) == (
        "transcribing",
        1,
        4,
    )
    # A finished job's late progress is not sent.
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'completed' WHERE id = $1",
        uuid.UUID(file_id),
    )
    assert await scheduler.schedule(_progress(file_id, key.tenant_prefix)) == 0


async def test_progress_webhooks_cli(api: Api, ingest_settings: Settings) -> None:
    _, key = await make_key(api.pool)
    env = {"DATABASE_URL": ingest_settings.require_database_url()}
    on = _cli(env, "webhooks", "progress", "--key", key.id, "on")
    assert on.returncode == 0, on.stderr
    assert '"progress": true' in on.stdout
    off = _cli(env, "webhooks", "progress", "--key", key.id, "off")
    assert off.returncode == 0 and '"progress": false' in off.stdout
