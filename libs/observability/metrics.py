"""Gauges and counters of the operational view (one process-wide registry, like libs.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

JOBS_BY_STATE = Gauge("transcribe_jobs", "Jobs in the catalog by state", ["state"])
CONSUMER_PENDING = Gauge(
    "transcribe_consumer_pending", "Messages not yet delivered", ["stream", "consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "transcribe_consumer_ack_pending",
    "Messages delivered and not yet acknowledged (in flight)",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "transcribe_consumer_redelivered",
    "Messages delivered more than once and not yet acknowledged",
    ["stream", "consumer"],
)
CONSUMER_ACK_FLOOR = Gauge(
    "transcribe_consumer_ack_floor_stream_seq",
    "Stream sequence below which every message is acknowledged",
    ["stream", "consumer"],
)
STREAM_LAST_SEQ = Gauge("transcribe_stream_last_seq", "Last sequence in the stream", ["stream"])
STREAM_MESSAGES = Gauge("transcribe_stream_messages", "Messages kept in the stream", ["stream"])
OUTBOX_UNPUBLISHED = Gauge("transcribe_outbox_unpublished", "Outbox rows not yet published")
OUTBOX_LAG = Gauge(
    "transcribe_outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none)"
)
DEAD_LETTERS_OPEN = Gauge(
    "transcribe_dead_letters_open", "Dead letters recorded and not yet requeued"
)
DEAD_LETTERS = Counter(
    "transcribe_dead_letters_total", "Dead letters recorded", ["kind", "consumer"]
)
COLLECTOR_ERRORS = Counter(
    "transcribe_ops_collector_errors_total",
    "Failed refreshes of the operational gauges",
    ["source"],
)
