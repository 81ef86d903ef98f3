"""The JSON advisories nats-server publishes for dead letters (io.nats.jetstream.advisory.v1.*)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.contracts import streams


class Advisory(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""
    id: str = ""
    timestamp: datetime | None = None
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0
    # MSG_TERMINATED carries the reason a consumer gave with term() (nats-server 2.11+).
    reason: str | None = None


advisory_decoder: msgspec.json.Decoder[Advisory] = msgspec.json.Decoder(Advisory)


def kind_of(subject: str) -> str | None:
    """'max_deliveries' / 'terminated' from the advisory subject; None for anything else."""
    if subject.startswith(streams.ADVISORY_MAX_DELIVERIES + "."):
        return "max_deliveries"
    if subject.startswith(streams.ADVISORY_MSG_TERMINATED + "."):
        return "terminated"
    return None
