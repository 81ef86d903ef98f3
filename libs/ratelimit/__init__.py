"""Token buckets per API key: `rate_limit_per_minute` tokens, refilled continuously.

The bucket lives in Postgres (`media_pipeline.rate_buckets`), not in the process: ingest runs
as several replicas behind a proxy, and a per-process bucket would multiply the limit by the
number of replicas (and reset on every restart). The cost is one single-row upsert per request
of a limited key; keys without a limit (the bootstrap key, by default) cost nothing. The
in-memory bucket has the same arithmetic, for one-process use and unit tests.
"""

from __future__ import annotations

from libs.ratelimit.bucket import (
    Decision,
    MemoryRateLimiter,
    PostgresRateLimiter,
    RateLimiter,
    refill,
)

__all__ = ["Decision", "MemoryRateLimiter", "PostgresRateLimiter", "RateLimiter", "refill"]
