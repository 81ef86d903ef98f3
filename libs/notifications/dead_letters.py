"""A dead letter's notifications, recorded in the transaction that records the dead letter
(services/deadletters): rules on `dead_lettered` of the job's key."""

from __future__ import annotations

import asyncpg

from libs.contracts import utcnow
from libs.deadletters.records import NewDeadLetter
from libs.notifications import events, items


async def record(conn: asyncpg.Connection, dead_letter_id: int, dl: NewDeadLetter) -> int:
    """Returns how many rules it was queued for."""
    if dl.audio_file_id is None:
        return 0
    job = await items.job_facts(conn, dl.audio_file_id)
    if job is None:
        return 0
    item = events.dead_letter_item(
        job,
        at=dl.occurred_at or utcnow(),
        kind=dl.kind,
        event_type=dl.event_type,
        consumer=dl.consumer,
        deliveries=dl.deliveries,
    )
    return await items.record(conn, job, f"dead_letter:{dead_letter_id}", item)
