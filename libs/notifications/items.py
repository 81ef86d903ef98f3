"""Events waiting for their message (`notification_items`, its one owner), and turning them into
messages on the notifier's delivery queue without storms.

`record` writes one row per (rule, event) that matches: the unique key (rule, source) makes a
replayed or redelivered event, or a dead letter captured twice, notify nothing more.

`flush` gives each rule at most one message per interval: a rule whose quiet period is over and
that has waiting items gets ONE message (the item in full, or a digest of all of them), queued as
a `webhook_deliveries` row in the same transaction that marks the items sent and starts the
next quiet period. Everything is in Postgres, so a restarted notifier loses and repeats nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeAlias

import asyncpg
import msgspec
import structlog

from libs.db import rows_affected
from libs.notifications import message
from libs.notifications.message import Item
from libs.webhooks import queue

log = structlog.get_logger()

# Every enabled rule of the key (while the key is not revoked) that asks for one of the item's
# events, limited to a campaign when the rule says so.
RECORD = """
INSERT INTO media_pipeline.notification_items (rule_id, source, audio_file_id, item)
SELECT r.id, $2, $3, $4::text::jsonb
FROM media_pipeline.notification_rules r
JOIN media_pipeline.api_keys k ON k.id = r.api_key_id AND k.revoked_at IS NULL
WHERE r.api_key_id = $1 AND r.disabled_at IS NULL AND r.events && $5::text[]
  AND (r.campaign IS NULL OR r.campaign = $6)
ON CONFLICT (rule_id, source) DO NOTHING
"""
# Rules with waiting items whose quiet period is over.
DUE_RULES = """
SELECT r.id FROM media_pipeline.notification_rules r
WHERE r.disabled_at IS NULL AND (r.quiet_until IS NULL OR r.quiet_until <= now())
  AND EXISTS (SELECT 1 FROM media_pipeline.notification_items i
              WHERE i.rule_id = r.id AND i.sent_at IS NULL)
LIMIT $1
"""
# The row lock serialises notifiers flushing the same rule.
LOCK_RULE = """
SELECT id, api_key_id, events, target FROM media_pipeline.notification_rules
WHERE id = $1 AND disabled_at IS NULL AND (quiet_until IS NULL OR quiet_until <= now())
FOR UPDATE
"""
# Items of a deleted job are dropped (marked sent without a delivery): nothing of a job is
# announced after its deletion.
WAITING = """
SELECT i.id, i.audio_file_id, i.item::text AS item, coalesce(a.status = 'deleted', false) AS gone
FROM media_pipeline.notification_items i
LEFT JOIN media_pipeline.audio_files a ON a.id = i.audio_file_id
WHERE i.rule_id = $1 AND i.sent_at IS NULL
ORDER BY i.id
"""
MARK_SENT = """
UPDATE media_pipeline.notification_items SET sent_at = now(), delivery_id = $2
WHERE id = ANY($1::bigint[])
"""
START_QUIET = """
UPDATE media_pipeline.notification_rules
SET quiet_until = now() + make_interval(secs => $2)
WHERE id = $1
"""
NEXT_DUE = """
SELECT extract(epoch FROM min(r.quiet_until) - now()) FROM media_pipeline.notification_rules r
WHERE r.disabled_at IS NULL AND r.quiet_until > now()
  AND EXISTS (SELECT 1 FROM media_pipeline.notification_items i
              WHERE i.rule_id = r.id AND i.sent_at IS NULL)
"""
# Sent items are kept as long as events can be replayed (the stream keeps 30 days by default),
# so a replay finds them and sends nothing.
PURGE_SENT = """
DELETE FROM media_pipeline.notification_items WHERE id IN (
    SELECT id FROM media_pipeline.notification_items
    WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(days => $1)
    LIMIT $2)
"""
# A deleted job (libs/jobs/deletion.py, in its transaction): its waiting and sent items go (their
# evidence is the job's content); events of a deleted job are not recorded again.
FORGET_JOB = "DELETE FROM media_pipeline.notification_items WHERE audio_file_id = $1"
JOB = """
SELECT a.id, a.api_key_id, a.campaign_name, a.phone, a.recording_id, a.status,
       t.duration_seconds
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.id = $1
"""

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class JobFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a notification tells of a job besides its event (campaign, masked phone, ...)."""

    id: uuid.UUID
    api_key_id: uuid.UUID
    campaign: str | None
    phone: str | None  # masked
    recording_id: str | None
    status: str
    duration: float | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> JobFacts:
        return cls(
            id=row["id"],
            api_key_id=row["api_key_id"],
            campaign=row["campaign_name"],
            phone=message.masked_phone(row["phone"]),
            recording_id=row["recording_id"],
            status=row["status"],
            duration=row["duration_seconds"],
        )


async def job_facts(conn: Conn, job_id: uuid.UUID) -> JobFacts | None:
    row = await conn.fetchrow(JOB, job_id)
    return None if row is None else JobFacts.from_row(row)


async def record(conn: Conn, job: JobFacts, source: str, item: Item) -> int:
    """Queue `item` for every rule of the job's key that asks for one of its events; returns
    how many rules it was new for (0 for a replay)."""
    if not item.events or job.status == "deleted":
        return 0
    tag = await conn.execute(
        RECORD,
        job.api_key_id,
        source,
        job.id,
        msgspec.json.encode(item).decode(),
        list(item.events),
        job.campaign,
    )
    return rows_affected(tag)


async def due_rules(conn: Conn, limit: int = 100) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(DUE_RULES, limit)]


async def next_due_in(conn: Conn) -> float | None:
    """Seconds until the next rule's quiet period ends with items waiting; None when none."""
    wait = await conn.fetchval(NEXT_DUE)
    return None if wait is None else float(wait)


async def flush_rule(
    pool: asyncpg.Pool, rule_id: uuid.UUID, *, interval: float, public_base_url: str
) -> int | None:
    """One message with everything the rule gathered, if its quiet period is over; returns the
    delivery id (None: nothing to send now)."""
    async with pool.acquire() as conn, conn.transaction():
        rule = await conn.fetchrow(LOCK_RULE, rule_id)
        if rule is None:
            return None
        rows = await conn.fetch(WAITING, rule_id)
        live = [r for r in rows if not r["gone"]]
        dropped = [r["id"] for r in rows if r["gone"]]
        if dropped:
            await conn.execute(MARK_SENT, dropped, None)
        if not live:
            return None
        items = [message.item_decoder.decode(r["item"]) for r in live]
        msg = message.compose(
            items, list(rule["events"]), public_base_url=public_base_url, now=datetime.now(UTC)
        )
        delivery_id = await _queue(conn, rule, msg, items)
        await conn.execute(MARK_SENT, [r["id"] for r in live], delivery_id)
        await conn.execute(START_QUIET, rule_id, interval)
    log.info("notification_queued", rule_id=str(rule_id), items=len(items), delivery_id=delivery_id)
    return delivery_id


async def _queue(
    conn: asyncpg.Connection, rule: asyncpg.Record, msg: message.Message, items: Sequence[Item]
) -> int:
    target = rule["target"]
    body = message.slack_body(msg) if target == "slack" else message.mail_body(msg)
    if msg.test:
        event_type = "notification.test"
    elif len(items) == 1:
        event_type = f"notification.{(items[0].for_rule(rule['events']) or items[0].events)[0]}"
    else:
        event_type = "notification.digest"
    return await queue.schedule_notice(
        conn,
        queue.NewNotice(
            event_id=uuid.uuid4(),
            event_type=event_type[:100],
            audio_file_id=uuid.UUID(items[0].audio_file_id) if len(items) == 1 else None,
            api_key_id=rule["api_key_id"],
            rule_id=rule["id"],
            channel=target,
            payload=body,
        ),
    )


async def queue_test(conn: Conn, rule_id: uuid.UUID, *, public_base_url: str) -> int:
    """A test message for the rule now (outside its quiet period); returns the delivery id."""
    rule = await conn.fetchrow(
        "SELECT id, api_key_id, events, target FROM media_pipeline.notification_rules "
        "WHERE id = $1",
        rule_id,
    )
    assert rule is not None
    msg = message.test_message(public_base_url=public_base_url, rule_events=list(rule["events"]))
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await _queue(c, rule, msg, [])
    return await _queue(conn, rule, msg, [])


async def purge_sent(conn: Conn, days: int, batch: int = 5000) -> int:
    return rows_affected(await conn.execute(PURGE_SENT, days, batch))


async def forget_job(conn: Conn, job_id: uuid.UUID) -> None:
    await conn.execute(FORGET_JOB, job_id)
