"""`transcribe replay ...`: the same operations as the recipes, through libs.replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from libs.contracts import streams
from services.cli import replay as cli
from tests.integration.ops.conftest import submit, wait_completed
from tests.stack_fixtures import RunningStack, WebhookInbox, eventually

pytestmark = pytest.mark.integration


def _tenant() -> str:
    return f"cli{uuid.uuid4().hex[:8]}"


async def _transcribed_at(pool: asyncpg.Pool, job: str) -> datetime:
    value = await pool.fetchval(
        "SELECT updated_at FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(job),
    )
    assert isinstance(value, datetime)
    return value


async def test_events_job_and_webhooks(
    running_stack: RunningStack,
    samples_url: str,
    webhook_inbox: WebhookInbox,
    pool: asyncpg.Pool,
) -> None:
    settings = running_stack.settings
    tenant = _tenant()
    since = datetime.now(UTC) - timedelta(seconds=5)
    job = await submit(running_stack.base_url, samples_url, tenant)
    (first,) = await webhook_inbox.wait_for(job, timeout=120)

    found = await cli.events(settings, job)
    assert [e.event_type for e in found] == ["audio.stored", "transcript.ready"]
    with pytest.raises(cli.UsageError):
        await cli.events(settings, str(uuid.uuid4()))

    # Without force a completed job is acknowledged without work; with force it is redone.
    before = await _transcribed_at(pool, job)
    msg_id = await cli.rerun_job(settings, job, force=True)
    assert msg_id != found[0].json()["event_id"]

    async def redone() -> bool:
        return await _transcribed_at(pool, job) > before

    await eventually(redone, timeout=120)
    await webhook_inbox.wait_for(job, count=2, timeout=60)
    events = await cli.events(settings, job)
    forced = [e for e in events if e.event_type == "audio.stored" and e.json()["force"]]
    assert len(forced) == 1

    # Both TranscriptReady events of the range are re-sent; each keeps its webhook-id.
    dry = await cli.with_js(
        settings,
        lambda js: cli.replay.resend_webhooks(js, since=since, tenant=tenant, dry_run=True),
    )
    assert dry.scanned == 2 and dry.republished == 0
    sent = await cli.with_js(
        settings, lambda js: cli.replay.resend_webhooks(js, since=since, tenant=tenant)
    )
    assert sent.republished == 2
    deliveries = await webhook_inbox.wait_for(job, count=4, timeout=60)
    ids = [d["headers"]["webhook-id"] for d in deliveries]
    assert len(set(ids)) == 2 and ids.count(first["headers"]["webhook-id"]) == 2


async def test_replay_audio_from_a_sequence_redoes_only_unfinished_jobs(
    running_stack: RunningStack, samples_url: str, pool: asyncpg.Pool
) -> None:
    settings = running_stack.settings
    tenant = _tenant()
    kept = await submit(running_stack.base_url, samples_url, tenant)
    lost = await submit(running_stack.base_url, samples_url, tenant)
    for job in (kept, lost):
        await wait_completed(pool, job)
    kept_at = await _transcribed_at(pool, kept)
    first_seq = min(
        e.seq for e in await cli.events(settings, kept) + await cli.events(settings, lost)
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM media_pipeline.transcriptions WHERE audio_file_id = $1", uuid.UUID(lost)
        )
        await conn.execute(
            "UPDATE media_pipeline.audio_files SET status = 'queued' WHERE id = $1",
            uuid.UUID(lost),
        )
    result = await cli.with_js(
        settings, lambda js: cli.replay.replay_audio(js, start_seq=first_seq, tenant=tenant)
    )
    assert result.scanned == 2 and result.republished == 2
    await wait_completed(pool, lost)

    async def consumed() -> bool:
        views = await cli.consumers(settings)
        (transcriber,) = [
            v
            for v in views
            if v["consumer"] == streams.TRANSCRIBER_DURABLE and v["stream"] == streams.STREAM_NAME
        ]
        return bool(transcriber["pending"] == 0 and transcriber["in_flight"] == 0)

    await eventually(consumed, timeout=60)
    assert await _transcribed_at(pool, kept) == kept_at


def test_parse_time() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert cli.parse_time("2h", now=now) == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert cli.parse_time("90m", now=now) == datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert cli.parse_time("2026-11-24T10:00:00Z") == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    # One rule for every time parameter (libs.params): no zone means UTC.
    assert cli.parse_time("2026-11-24T10:00:00") == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    for bad in ("yesterday", "2026-13-24T10:00:00", "2w"):
        with pytest.raises(cli.UsageError):
            cli.parse_time(bad)
