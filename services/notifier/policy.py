"""When the notifier retries, gives up, and disables an endpoint: one value object, so tests and
benchmarks inject a shortened schedule instead of waiting hours."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Delay before attempt n+1 after n failed attempts of a round: immediately, 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h, 10 h (the schedule of the best webhook providers; about 28 h in all).
RETRY_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    schedule: tuple[float, ...] = RETRY_SCHEDULE
    # Each delay is multiplied by a factor in [1 - jitter, 1 + jitter], so endpoints that came
    # back after an outage are not hit by every queued delivery in the same second.
    jitter: float = 0.1
    # A receiver's Retry-After may push an attempt later than the schedule, never sooner, and
    # never beyond this.
    max_retry_after: float = 36000.0
    # Attempts in flight at once, and at most this many to one endpoint URL, so a receiver
    # that hangs until the timeout delays only its own deliveries.
    concurrency: int = 32
    per_endpoint: int = 4
    # How long a claimed delivery stays invisible to other notifiers: longer than any POST
    # (15 s) plus recording it. Also how late an attempt whose outcome could not be recorded
    # (Postgres gone mid-attempt, a crash) is retried.
    lease_seconds: float = 60.0
    # Auto-disable of a key's default endpoint: every attempt to it failed for this long AND at
    # least this many attempts in a row failed (so one lonely event a week cannot disable it).
    disable_after_seconds: float = 5 * 86400.0
    disable_min_failures: int = 10
    # Finished deliveries stay listable and recoverable this long.
    retention_days: int = 30

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def next_delay(self, attempts_done: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after `attempts_done` failed attempts of this round,
        or None when the schedule is exhausted."""
        if attempts_done >= self.max_attempts:
            return None
        base = self.schedule[max(attempts_done, 1) - 1]
        # Jitter, not cryptography.
        jittered = base * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)  # noqa: S311
        if retry_after is not None:
            return max(jittered, min(retry_after, self.max_retry_after))
        return jittered


DEFAULT_POLICY = DeliveryPolicy()
