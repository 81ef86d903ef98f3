"""Writing events: always inside the caller's transaction, next to the state they announce."""

from __future__ import annotations

import asyncpg

from libs.contracts import Event, encode

INSERT_EVENT = """
INSERT INTO media_pipeline.outbox (event_id, subject, payload, headers)
VALUES ($1, $2, $3, $4)
"""


def event_row(event: Event, subject: str) -> tuple[str, str, bytes, dict[str, str]]:
    """The outbox columns (event_id, subject, payload, headers) for `event`, for statements
    that insert the event themselves, as a CTE beside the state change (one statement is one
    transaction, and one round trip)."""
    headers = {"Nats-Msg-Id": event.event_id}
    if event.trace_id:
        headers["Trace-Id"] = event.trace_id
    return event.event_id, subject, encode(event), headers


async def enqueue(conn: asyncpg.Connection, event: Event, subject: str) -> None:
    if not conn.is_in_transaction():
        # An event written outside the state change's transaction breaks the outbox guarantee.
        raise RuntimeError("outbox.enqueue must run inside the state change's transaction")
    await conn.execute(INSERT_EVENT, *event_row(event, subject))
