"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "transcribe_http_requests_total",
    "HTTP requests by route and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "transcribe_http_request_seconds", "HTTP request latency", ["route", "method"]
)
JOBS_SUBMITTED = Counter(
    "transcribe_jobs_submitted_total", "Jobs accepted by the ingest API", ["source", "outcome"]
)
JOBS_FINISHED = Counter(
    "transcribe_jobs_finished_total", "Jobs finished by the transcriber", ["engine", "outcome"]
)
ENGINE_LATENCY = Histogram(
    "transcribe_engine_seconds",
    "Engine transcription latency",
    ["engine", "model"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800),
)
ENGINE_PAUSED = Gauge(
    "transcribe_engine_paused", "1 while consumption is paused because credentials were rejected"
)
WEBHOOK_ATTEMPTS = Counter(
    "transcribe_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "transcribe_webhook_seconds",
    "Webhook POST latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
OUTBOX_PUBLISHED = Counter("transcribe_outbox_published_total", "Outbox events published")
DELETIONS = Counter(
    "transcribe_deletions_total", "Jobs deleted, by reason (api, retention)", ["reason"]
)
DELETIONS_FINISHED = Counter(
    "transcribe_deletions_finished_total",
    "Deleted jobs whose objects were all removed from the bucket",
)
DELETIONS_PENDING = Gauge(
    "transcribe_deletions_pending", "Deleted jobs whose objects are not all removed yet"
)
DELETION_LAG = Gauge(
    "transcribe_deletion_lag_seconds",
    "Age of the oldest deletion whose objects are not all removed yet (0: none)",
)
# Deleted jobs' events in the stream (libs/outbox/published.py).
STREAM_ERASED = Counter(
    "transcribe_stream_messages_erased_total", "Messages of deleted jobs erased from the stream"
)
STREAM_ERASURES_PENDING = Gauge(
    "transcribe_stream_erasures_pending", "Messages of deleted jobs not erased from the stream yet"
)
RETENTION_REMOVED = Counter(
    "transcribe_retention_removed_total",
    "What retention removed: whole jobs (transcript TTL) and audio objects (audio TTL)",
    ["what"],
)
RETENTION_LAG = Gauge(
    "transcribe_retention_lag_seconds",
    "How far behind retention is: age of the oldest expiry not yet carried out (0: none)",
)
REDACTIONS = Counter(
    "transcribe_redactions_total",
    "Values redacted from transcripts, by entity class (counts only, never values)",
    ["class"],
)
# Call insights (issue 21; services/insights).
INSIGHTS = Counter(
    "transcribe_insights_total",
    "Completed transcripts evaluated by services/insights, by insights status "
    "(completed, failed, not_configured)",
    ["status"],
)
INSIGHTS_TOKENS = Counter(
    "transcribe_insights_tokens_total",
    "Tokens the chat model billed for insights, by kind (prompt, completion)",
    ["kind"],
)
INSIGHTS_MODEL_UNAVAILABLE = Counter(
    "transcribe_insights_model_unavailable_total",
    "Insights requests put back because the chat model was unavailable (429, 5xx, no connection)",
)
