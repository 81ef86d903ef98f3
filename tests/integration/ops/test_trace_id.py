"""One trace id from the HTTP request to the webhook, in the JSON logs of every service.

`transcribe up` runs as a real subprocess (against its own nats-server and database, so no
other test's workers take the job) with JSON logs on stdout; the test submits with an
X-Request-ID and then finds that id in ingest, transcriber and notifier log lines, in the job
row, on the AudioStored event and in the webhook payload.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from embedded.nats import NatsServer
from tests.stack_fixtures import (
    API_KEY,
    WEBHOOK_SECRET,
    WebhookInbox,
    create_database,
    eventually,
    free_port,
)

pytestmark = pytest.mark.integration


async def test_one_trace_id_through_every_service(
    tmp_path: Path,
    postgres_server: Any,
    s3_server: Any,
    samples_url: str,
    webhook_inbox: WebhookInbox,
) -> None:
    dsn = await create_database(postgres_server, "gw_trace")
    port = free_port()
    allow = ",".join(
        u.split("://", 1)[1].split("/", 1)[0] for u in (samples_url, webhook_inbox.url)
    )
    log_path = tmp_path / "up.log"
    async with NatsServer(tmp_path / "nats") as nats_server:
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "NATS_URL": nats_server.url,
            "BACKBLAZE_B2_S3_ENDPOINT": s3_server.endpoint,
            "BACKBLAZE_B2_BUCKET": "trace-bucket",
            "BACKBLAZE_B2_KEY_ID": s3_server.access_key,
            "BACKBLAZE_B2_APPLICATION_KEY": s3_server.secret_key,
            "API_KEY": API_KEY,
            "WEBHOOK_URL": webhook_inbox.url,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SSRF_ALLOWLIST": allow,
            "INGEST_PORT": str(port),
            "TRANSCRIBE_HOME": str(tmp_path / "home"),
            "TRANSCRIBE_ENGINE": "offline",
        }
        env.pop("OPENAI_API_KEY", None)
        with log_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from services.cli import main; sys.exit(main())",
                "--log-format", "json", "up",
                env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"

                async def ready() -> bool:
                    assert proc.returncode is None, log_path.read_text()[-3000:]
                    try:
                        async with aiohttp.ClientSession() as s, s.get(base + "/readyz") as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                await eventually(ready, timeout=90)
                trace_id = f"trace-{uuid.uuid4().hex}"
                data = {"url": f"{samples_url}/{uuid.uuid4().hex}/hello_campaign.wav"}
                headers = {"X-API-Key": API_KEY, "X-Request-ID": trace_id}
                async with (
                    aiohttp.ClientSession() as s,
                    s.post(base + "/api/media/transcribe", data=data, headers=headers) as r,
                ):
                    assert r.status == 200
                    assert r.headers["X-Request-ID"] == trace_id
                    job = (await r.json())["audio_file_id"]
                (delivery,) = await webhook_inbox.wait_for(job, timeout=120)
            finally:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.wait(), 60)

    assert delivery["payload"]["data"]["trace_id"] == trace_id
    conn = await asyncpg.connect(dsn)
    try:
        assert (
            await conn.fetchval(
                "SELECT trace_id FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(job)
            )
            == trace_id
        )
        payloads = await conn.fetch(
            "SELECT subject, payload, headers FROM media_pipeline.outbox"
            " WHERE convert_from(payload, 'UTF8') LIKE $1",
            f"%{job}%",
        )
    finally:
        await conn.close()
    events = {json.loads(p["payload"])["type"]: p for p in payloads}
    # insights.ready (services/insights, also run by `up`) carries it too once it is written.
    assert {"audio.stored", "transcript.ready"} <= set(events)
    assert set(events) <= {"audio.stored", "transcript.ready", "insights.ready"}
    for p in events.values():
        assert json.loads(p["payload"])["trace_id"] == trace_id
        headers = p["headers"] if isinstance(p["headers"], dict) else json.loads(p["headers"])
        assert headers["Trace-Id"] == trace_id

    lines = []
    for raw in log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # stdlib warnings from third-party libraries are plain text
    traced = {line["event"] for line in lines if line.get("trace_id") == trace_id}
    assert "http_request" in traced  # ingest
    assert "transcription_handled" in traced  # transcriber
    assert "webhooks_scheduled" in traced  # notifier
    assert "webhook_delivered" in traced  # notifier, delivery loop
