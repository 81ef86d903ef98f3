"""A dead letter notifies the rules on `dead_lettered` of its job's key: recorded by the
deadletters service in the transaction that records the dead letter (docs/notifications.md)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from libs import apikeys
from libs.notifications import rules
from tests.integration.ops.conftest import DeadLetterService, insert_job, new_job
from tests.stack_fixtures import RunningStack, eventually

pytestmark = pytest.mark.integration


async def test_a_dead_letter_is_queued_for_the_rules_on_dead_lettered_once(
    running_stack: RunningStack, deadletter_service: DeadLetterService, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, key = await apikeys.create(conn, name=f"dl-{uuid.uuid4().hex[:6]}", tenant_prefix="ops")
    key_id = uuid.UUID(key.id)
    rule = await rules.create(
        pool,
        key_id,
        rules.NewRule(events=["dead_lettered"], emails=["ops@example.com"]).checked(""),
    )
    # The audio object is missing: the transcriber fails the job and term()s the message.
    job = new_job(key.id)
    await insert_job(pool, job, publish=True)

    async def recorded() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await pool.fetchrow(
            "SELECT id FROM media_pipeline.dead_letters WHERE audio_file_id = $1", job.id
        )
        return row

    dead_letter = await eventually(recorded, timeout=60)
    items = await pool.fetch(
        "SELECT source, item::text AS item FROM media_pipeline.notification_items"
        " WHERE rule_id = $1",
        uuid.UUID(rule.id),
    )
    # Same transaction: the dead letter is never there without its notification.
    assert [i["source"] for i in items] == [f"dead_letter:{dead_letter['id']}"]
    item = json.loads(items[0]["item"])
    assert item["events"] == ["dead_lettered"] and item["audio_file_id"] == str(job.id)
    assert item["error_code"] == "terminated"
    assert "audio.stored gave up on transcriber" in item["error_detail"]
