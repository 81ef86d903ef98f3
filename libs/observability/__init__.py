"""Operational metrics read from Postgres and JetStream (jobs by state, consumer lag, outbox lag,
dead letters), refreshed in the background and served by /metrics. Per-request and per-job
counters live in libs.metrics."""

from libs.observability.collector import OpsCollector, OpsSnapshot, collect_snapshot
from libs.observability.server import serve_metrics

__all__ = ["OpsCollector", "OpsSnapshot", "collect_snapshot", "serve_metrics"]
