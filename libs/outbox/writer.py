"""Writing events: always inside the caller's transaction, next to the state they announce."""

from __future__ import annotations

import asyncpg

from libs.contracts import Event, encode

INSERT_EVENT = """
INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
VALUES ($1, $2, $3, $4)
"""


async def enqueue(conn: asyncpg.Connection, event: Event, subject: str) -> None:
    if not conn.is_in_transaction():
        # An event written outside the state change's transaction breaks the outbox guarantee.
        raise RuntimeError("outbox.enqueue must run inside the state change's transaction")
    headers = {"Nats-Msg-Id": event.event_id}
    if event.trace_id:
        headers["Trace-Id"] = event.trace_id
    await conn.execute(INSERT_EVENT, event.event_id, subject, encode(event), headers)
