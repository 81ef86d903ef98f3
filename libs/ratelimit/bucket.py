"""The token bucket: capacity = the per-minute limit (the burst), refill = limit / 60 per second."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

# Takes a token if at least one is available after refilling; no row returned means "denied".
# The bucket of a new key starts full. LEAST caps the refill at the capacity, which also
# applies a lowered limit at once.
TAKE = """
INSERT INTO media_pipeline.rate_buckets AS b (api_key_id, tokens, updated_at)
VALUES ($1, $2::float8 - 1, clock_timestamp())
ON CONFLICT (api_key_id) DO UPDATE SET
    tokens = LEAST($2::float8,
                   b.tokens + EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at) * $2::float8 / 60)
             - 1,
    updated_at = clock_timestamp()
WHERE LEAST($2::float8,
            b.tokens + EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at) * $2::float8 / 60) >= 1
RETURNING tokens
"""
AVAILABLE = """
SELECT LEAST($2::float8,
             tokens + EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * $2::float8 / 60)
FROM media_pipeline.rate_buckets WHERE api_key_id = $1
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Whole seconds until one token is available (0 when allowed); for the Retry-After header.
    retry_after: int = 0
    remaining: int = 0


class RateLimiter(Protocol):
    async def take(self, key_id: str, per_minute: int) -> Decision: ...


def refill(tokens: float, elapsed: float, per_minute: int) -> float:
    return min(float(per_minute), tokens + max(elapsed, 0.0) * per_minute / 60.0)


def _wait_for_one(available: float, per_minute: int) -> int:
    return max(1, math.ceil((1.0 - available) * 60.0 / per_minute))


class PostgresRateLimiter:
    """Shared by every replica that uses the same database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def take(self, key_id: str, per_minute: int) -> Decision:
        key = uuid.UUID(key_id)
        # Postgres outages surface as DatabaseUnavailable (the pool translates them).
        left = await self._pool.fetchval(TAKE, key, float(per_minute))
        if left is not None:
            return Decision(True, remaining=int(left))
        available = await self._pool.fetchval(AVAILABLE, key, float(per_minute))
        return Decision(False, retry_after=_wait_for_one(float(available or 0.0), per_minute))


class MemoryRateLimiter:
    """Per process: right for a single replica and for tests; N replicas allow N times the limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key_id: str, per_minute: int) -> Decision:
        now = self._clock()
        tokens, at = self._buckets.get(key_id, (float(per_minute), now))
        available = refill(tokens, now - at, per_minute)
        if available < 1.0:
            self._buckets[key_id] = (available, now)
            return Decision(False, retry_after=_wait_for_one(available, per_minute))
        self._buckets[key_id] = (available - 1.0, now)
        return Decision(True, remaining=int(available - 1.0))
