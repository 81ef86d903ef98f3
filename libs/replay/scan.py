"""Reading a range of the stream: an ephemeral consumer from a start time or sequence.

This is what `nats stream view --since` and `nats consumer add --deliver <time|seq>` do. The
range ends at the stream's last sequence when the scan starts, so copies a replay publishes
(they land at the end of the stream, on the same subjects) are never read back by it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.bus import BusUnavailable, jetstream
from libs.contracts import streams

# No message for this long: the filter has nothing more up to the stream's end.
IDLE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    subject: str
    time: datetime
    data: bytes
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def event_type(self) -> str | None:
        value = self.json().get("type")
        return value if isinstance(value, str) else None


def consumer_config(
    filter_subject: str,
    *,
    start_time: datetime | None = None,
    start_seq: int | None = None,
    durable: str | None = None,
    ack: bool = False,
) -> js_api.ConsumerConfig:
    """The consumer a replay reads through (`nats consumer add --deliver ...` in docs/operations.md)."""
    if start_time is not None and start_seq is not None:
        raise ValueError("give a start time or a start sequence, not both")
    if start_seq is not None:
        policy, opt_seq, opt_time = js_api.DeliverPolicy.BY_START_SEQUENCE, start_seq, None
    elif start_time is not None:
        if start_time.tzinfo is None:
            raise ValueError("start_time needs a time zone")
        policy, opt_seq = js_api.DeliverPolicy.BY_START_TIME, None
        opt_time = start_time.astimezone(UTC)
    else:
        policy, opt_seq, opt_time = js_api.DeliverPolicy.ALL, None, None
    return js_api.ConsumerConfig(
        durable_name=durable,
        name=durable,
        description="replay (transcribe replay / docs/operations.md recipe)",
        deliver_policy=policy,
        opt_start_seq=opt_seq,
        opt_start_time=opt_time,
        ack_policy=js_api.AckPolicy.EXPLICIT if ack else js_api.AckPolicy.NONE,
        filter_subject=filter_subject,
        replay_policy=js_api.ReplayPolicy.INSTANT,
        # A replay that dies leaves nothing behind for long.
        inactive_threshold=300.0,
        max_ack_pending=1000,
    )


async def scan(
    js: JetStreamContext,
    filter_subject: str,
    *,
    start_time: datetime | None = None,
    start_seq: int | None = None,
    until: datetime | None = None,
    stream: str = streams.STREAM_NAME,
) -> AsyncIterator[StoredEvent]:
    """Every message on `filter_subject` from the start point to the stream's current end."""
    info = await js.stream_info(stream)
    last = int(info.state.last_seq)
    if last == 0 or (start_seq is not None and start_seq > last):
        return
    config = consumer_config(filter_subject, start_time=start_time, start_seq=start_seq)
    # An ordered push consumer, like `nats stream view`: ephemeral, flow controlled, no acks,
    # and much faster than pulling (a fetch hands back what has arrived, often one message).
    sub = await js.subscribe(
        filter_subject,
        stream=stream,
        ordered_consumer=True,
        config=js_api.ConsumerConfig(
            deliver_policy=config.deliver_policy,
            opt_start_seq=config.opt_start_seq,
            opt_start_time=config.opt_start_time,
        ),
        idle_heartbeat=5.0,
    )
    try:
        while True:
            msg = await jetstream.next_message(sub, IDLE_TIMEOUT)
            if msg is None:
                return  # nothing (more) on this filter up to the end
            meta = msg.metadata
            if meta.sequence.stream > last:
                return
            event = StoredEvent(
                seq=meta.sequence.stream,
                subject=msg.subject,
                time=meta.timestamp,
                data=msg.data,
                headers=dict(msg.headers or {}),
            )
            if until is not None and event.time > until:
                return
            yield event
            if meta.sequence.stream >= last or meta.num_pending == 0:
                return
    finally:
        # Best effort: the server removes an ordered consumer's state once it is unused.
        with contextlib.suppress(BusUnavailable):
            await jetstream.unsubscribe(sub)
