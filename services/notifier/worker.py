"""The notifier: turns transcript events into durable webhook deliveries, then delivers them.

Two halves. `Scheduler.handle` (a JetStream consumer handler) writes one `webhook_deliveries`
row per endpoint and acks; the row is the durable retry queue, so a notifier restarted in the
middle of a 5-hour backoff still delivers on time. `Deliverer` POSTs due rows, each attempt in
its own task so one slow endpoint never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import asyncpg
import msgspec
import structlog

from libs.apikeys import endpoints
from libs.bus import Delivery, Reject, Retry
from libs.contracts import (
    InsightsReady,
    JobProgress,
    TranscriptionDeleted,
    TranscriptReady,
    TranscriptResult,
)
from libs.db import DatabaseUnavailable
from libs.db.listen import Wakeup, sleep_until
from libs.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from libs.safehttp import BlockedUrl, SafeHttpClient, UpstreamError
from libs.webhooks import payload
from libs.webhooks import queue as repo
from services.notifier import signing
from services.notifier.policy import DEFAULT_POLICY, RETRY_SCHEDULE, DeliveryPolicy

if TYPE_CHECKING:
    from services.notifier.notices import Notices

log = structlog.get_logger()

# What the notifier consumes: the transcript results and, from services/insights, InsightsReady.
NotifierEvent = TranscriptResult | InsightsReady
notifier_event_decoder: msgspec.json.Decoder[NotifierEvent] = msgspec.json.Decoder(NotifierEvent)

CHANNEL = "media_pipeline_webhooks"
DB_ERRORS = (DatabaseUnavailable,)
PURGE_EVERY = 3600.0
# A claimed row's lease outlasts its POST (WEBHOOK_TIMEOUT) by at least this much, the time to
# record the outcome: a lease that ran out mid-POST let the row be claimed and POSTed again
# beside the attempt still running (with WEBHOOK_TIMEOUT at or above the policy's 60 s).
LEASE_MARGIN = 10.0
MAX_ATTEMPTS = DEFAULT_POLICY.max_attempts
__all__ = ["MAX_ATTEMPTS", "RETRY_SCHEDULE", "Deliverer", "Scheduler", "next_delay"]


def next_delay(attempts_done: int, retry_after: float | None) -> float | None:
    """The default policy's delay (kept for callers that do not inject a policy)."""
    return DEFAULT_POLICY.next_delay(attempts_done, retry_after)


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        public_base_url: str,
        transcript_cap: int = payload.TRANSCRIPT_CAP,
        on_scheduled: Callable[[], None] | None = None,
        notices: Notices | None = None,
    ) -> None:
        self._pool = pool
        # Notifications to people (services/notifier/notices.py), when configured.
        self._notices = notices
        # An in-process deliverer is woken directly; NOTIFY wakes the others (and this one).
        self._on_scheduled = on_scheduled
        self._base = public_base_url.rstrip("/")
        self._cap = transcript_cap

    async def handle(self, delivery: Delivery) -> None:
        try:
            event = notifier_event_decoder.decode(delivery.data)
        except msgspec.DecodeError as exc:
            log.error("undecodable_event", subject=delivery.subject, error=str(exc))
            raise Reject(f"undecodable event: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            audio_file_id=event.audio_file_id, trace_id=event.trace_id, event_id=event.event_id
        ):
            try:
                n = await self.schedule(event)
                if self._notices is not None:
                    await self._notices.record(event)
            except DatabaseUnavailable as exc:
                raise Retry(f"Postgres unavailable: {exc}") from exc
            log.info("webhooks_scheduled", endpoints=n, type=type(event).__name__)

    async def schedule(self, event: NotifierEvent) -> int:
        """Write the event's deliveries (idempotent per event and endpoint); returns how many."""
        try:
            job_id = uuid.UUID(event.audio_file_id)
            event_id = uuid.UUID(event.event_id)
        except ValueError as exc:
            raise Reject("bad audio_file_id or event_id") from exc
        job = await repo.job_for_event(self._pool, job_id)
        if job is None:
            raise Reject(f"no job {event.audio_file_id}")
        if job.status == "deleted" and not isinstance(event, TranscriptionDeleted):
            # A result that reaches the notifier after its job was deleted is not announced.
            return 0
        if isinstance(event, JobProgress) and (
            not job.webhook_progress or job.status != "processing"
        ):
            # Progress webhooks are opt-in per key, and stale once the job has finished.
            return 0
        # (url, live): the key's disabled endpoint still gets a cancelled row, recoverable later.
        endpoints: dict[str, bool] = {}
        if job.callback_url:
            endpoints[job.callback_url] = True
        if job.key_webhook_url:
            endpoints.setdefault(job.key_webhook_url, job.webhook_disabled_at is None)
        if not endpoints:
            return 0
        if isinstance(event, TranscriptReady):
            body = payload.completed_body(
                event,
                job,
                job.text or "",
                transcript_url=f"{self._base}/api/media/transcript/{event.audio_file_id}.txt",
                cap=self._cap,
            )
            event_type = payload.COMPLETED
        elif isinstance(event, JobProgress):
            body = payload.progress_body(event, job)
            event_type = payload.PROGRESS
        elif isinstance(event, TranscriptionDeleted):
            body = payload.deleted_body(event, job)
            event_type = payload.DELETED
        elif isinstance(event, InsightsReady):
            body = payload.insights_body(event, job)
            event_type = payload.INSIGHTS
        else:
            body = payload.failed_body(event, job)
            event_type = payload.FAILED
        await repo.schedule(
            self._pool,
            [
                repo.NewDelivery(event_id, event_type, job_id, job.api_key_id, url, body, live)
                for url, live in endpoints.items()
            ],
        )
        if self._on_scheduled is not None:
            self._on_scheduled()
        return sum(endpoints.values())


Verdict = Literal["succeeded", "gone", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Posted:
    """What one POST got: the receiver's status, or the error that kept it from answering."""

    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    # Not worth retrying (a private address, no signing secret).
    permanent: bool = False
    latency_ms: int = 0
    # Sent without an HTTP status (an e-mail the SMTP server accepted).
    delivered: bool = False
    # The target will not work again (Slack's 404 no_service, ...): like a 410.
    gone: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    delay: float | None = None


def judge(
    status: int | None,
    *,
    steps_done: int,
    retry_after: float | None,
    permanent: bool,
    policy: DeliveryPolicy,
    delivered: bool = False,
    gone: bool = False,
) -> Outcome:
    """What one attempt means for its delivery. Only 2xx counts; 410 stops for good; anything
    else retries on the schedule (Retry-After may push the next attempt later)."""
    if delivered or (status is not None and 200 <= status < 300 and not gone):
        return Outcome("succeeded")
    if status == 410 or gone:
        return Outcome("gone")
    if permanent:
        return Outcome("failed")
    delay = policy.next_delay(steps_done, retry_after if status in (429, 503) else None)
    return Outcome("failed") if delay is None else Outcome("retry", delay)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: SafeHttpClient,
        *,
        timeout: float = 15.0,
        concurrency: int | None = None,
        poll_interval: float = 5.0,
        policy: DeliveryPolicy = DEFAULT_POLICY,
        shutdown_grace: float = 5.0,
        notices: Notices | None = None,
    ) -> None:
        self._pool = pool
        # The sender of notification rows (channel slack/email).
        self._notices = notices
        self._http = http
        self._timeout = timeout
        self._concurrency = concurrency or policy.concurrency
        self._per_endpoint_limit = max(1, policy.per_endpoint)
        self._per_endpoint: dict[str, int] = {}
        # NOTIFY is the fast path; polling covers notifications lost while LISTEN reconnects.
        self._poll_interval = poll_interval
        self._policy = policy
        self._lease = max(policy.lease_seconds, timeout + LEASE_MARGIN)
        self._shutdown_grace = shutdown_grace
        self._wakeup = Wakeup(pool, CHANNEL)
        self._inflight: dict[asyncio.Task[None], repo.Due] = {}
        self.delivered = 0

    def wake(self) -> None:
        """Look for due deliveries now (a row was just written in this process)."""
        self._wakeup.event.set()

    async def deliver_due(self) -> int:
        """Claim one batch of due deliveries and attempt them all (tests and burst runs)."""
        due = await repo.claim_due(self._pool, self._concurrency, self._lease)
        if due:
            await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

    async def run_until_idle(self) -> int:
        total = 0
        while (n := await self.deliver_due()) > 0:
            total += n
        return total

    async def purge(self, batch: int = 5000) -> int:
        """Delete finished deliveries past retention; returns how many."""
        total = 0
        while True:
            n = await repo.purge_finished(self._pool, self._policy.retention_days, batch)
            total += n
            if n < batch:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_purge = float("-inf")  # purge once at start, then hourly
        try:
            async with self._wakeup.listening(stop):
                while not stop.is_set():
                    self._wakeup.event.clear()
                    timeout = await self._dispatch()
                    if loop.time() - last_purge > PURGE_EVERY:
                        last_purge = loop.time()
                        with contextlib.suppress(*DB_ERRORS):
                            if n := await self.purge():
                                log.info("webhook_deliveries_purged", count=n)
                    if timeout > 0:
                        await sleep_until(stop, timeout, self._wakeup.event)
        finally:
            await self._drain()

    async def _dispatch(self) -> float:
        """Start attempts for due rows in the free slots; returns how long to wait."""
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            # A finishing attempt sets the wake event.
            return self._poll_interval
        busy = [u for u, n in self._per_endpoint.items() if n >= self._per_endpoint_limit]
        try:
            due = await repo.claim_due(self._pool, free, self._lease, busy)
            extra = self._start(due)
            if extra:
                # Over this endpoint's share: straight back to the queue, still due.
                await repo.release_leases(self._pool, extra)
            if len(due) == free or extra:
                return 0.0
            busy = [u for u, n in self._per_endpoint.items() if n >= self._per_endpoint_limit]
            wait = await repo.next_due_in(self._pool, busy)
        except DB_ERRORS as exc:
            log.warning("notifier_db_unavailable", error=str(exc))
            return 1.0
        if wait is None:
            return self._poll_interval
        # Never 0: a due row locked by another notifier must not make this loop spin.
        return min(max(wait, 0.01), self._poll_interval)

    def _start(self, due: list[repo.Due]) -> list[int]:
        """Start what the per-endpoint limit allows; returns the ids left over."""
        extra: list[int] = []
        for d in due:
            if self._per_endpoint.get(d.endpoint_url, 0) >= self._per_endpoint_limit:
                extra.append(d.id)
                continue
            self._per_endpoint[d.endpoint_url] = self._per_endpoint.get(d.endpoint_url, 0) + 1
            task = asyncio.create_task(self._attempt_logged(d))
            self._inflight[task] = d
            task.add_done_callback(self._finished)
        return extra

    def _finished(self, task: asyncio.Task[None]) -> None:
        due = self._inflight.pop(task, None)
        if due is not None:
            left = self._per_endpoint.get(due.endpoint_url, 1) - 1
            if left > 0:
                self._per_endpoint[due.endpoint_url] = left
            else:
                self._per_endpoint.pop(due.endpoint_url, None)
        self._wakeup.event.set()

    async def _drain(self) -> None:
        """Let in-flight POSTs finish briefly; hand back the leases of those that do not."""
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=self._shutdown_grace)
        ids = [self._inflight[t].id for t in pending if t in self._inflight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if ids:
            with contextlib.suppress(*DB_ERRORS):
                await repo.release_leases(self._pool, ids)

    async def _attempt_logged(self, due: repo.Due) -> None:
        try:
            await self._attempt(due)
        except DB_ERRORS as exc:
            # The row stays leased and comes back when the lease ends: at-least-once.
            log.warning("webhook_outcome_not_recorded", delivery_id=due.id, error=str(exc))
        except Exception:
            log.exception("webhook_attempt_crashed", delivery_id=due.id)

    async def _attempt(self, due: repo.Due) -> None:
        attempt_no = due.attempts + 1
        with structlog.contextvars.bound_contextvars(
            webhook_id=due.event_id,
            trace_id=due.trace_id,
            delivery_id=due.id,
            audio_file_id=str(due.audio_file_id),
            attempt=attempt_no,
        ):
            posted = await self._send(due)
            outcome = judge(
                posted.status,
                steps_done=due.schedule_step + 1,
                retry_after=posted.retry_after,
                permanent=posted.permanent,
                policy=self._policy,
                delivered=posted.delivered,
                gone=posted.gone,
            )
            await self._record(due, attempt_no, posted, outcome)
            WEBHOOK_ATTEMPTS.labels(
                outcome="blocked" if posted.permanent else outcome.verdict
            ).inc()

    async def _send(self, due: repo.Due) -> Posted:
        if due.channel == "webhook":
            return await self._post(due)
        if self._notices is None:
            return Posted(error="this notifier does not send notifications")
        return await self._notices.send(due)

    async def _post(self, due: repo.Due) -> Posted:
        """One signed POST of the delivery; what the receiver (or the way to it) answered."""
        try:
            # Each attempt is signed with its own timestamp, so receivers' replay windows
            # hold. No secret (a row whose key is gone): no POST at all, never an unsigned one.
            headers = signing.headers(
                list(due.secrets), due.event_id, datetime.now(UTC), due.payload
            )
            result = await self._http.post(
                due.endpoint_url, body=due.payload, headers=headers, timeout=self._timeout
            )
        except BlockedUrl as exc:
            # A name that does not resolve today may tomorrow; a private address will not.
            return Posted(
                error=f"blocked: {exc.code}: {exc.message}",
                permanent=exc.code != "unresolvable_host",
            )
        except UpstreamError as exc:
            return Posted(error=f"{exc.code}: {exc.message}")
        except signing.Unsigned:
            return Posted(error="unsigned: the key has no signing secret; not sent", permanent=True)
        WEBHOOK_LATENCY.observe(result.latency_s)
        return Posted(
            status=result.status,
            retry_after=retry_after_seconds(result.headers.get("Retry-After")),
            latency_ms=int(result.latency_s * 1000),
        )

    async def _record(
        self, due: repo.Due, attempt_no: int, posted: Posted, outcome: Outcome
    ) -> None:
        """The attempt in the log, and the delivery's next state by the verdict."""
        status, latency_ms = posted.status, posted.latency_ms
        reason = posted.error or f"HTTP {status}"
        async with self._pool.acquire() as conn:
            await repo.record_attempt(conn, due.id, attempt_no, status, latency_ms, posted.error)
            if outcome.verdict == "succeeded":
                await repo.finish(
                    conn, due.id, "succeeded", status_code=status, error=None, latency_ms=latency_ms
                )
                if due.is_key_endpoint and due.api_key_id is not None:
                    await endpoints.succeeded(conn, due.api_key_id, due.endpoint_url)
                self.delivered += 1
                log.info("webhook_delivered", status=status, ms=latency_ms)
            elif outcome.verdict == "gone":
                await self._gone(conn, due, posted)
            elif outcome.verdict == "retry":
                assert outcome.delay is not None
                await repo.reschedule(
                    conn,
                    due.id,
                    status_code=status,
                    error=reason,
                    latency_ms=latency_ms,
                    delay=outcome.delay,
                )
                log.info(
                    "webhook_retry_scheduled",
                    status=status,
                    error=reason,
                    delay=round(outcome.delay, 1),
                )
            else:
                await repo.finish(
                    conn, due.id, "failed", status_code=status, error=reason, latency_ms=latency_ms
                )
                log.warning("webhook_gave_up", status=status, error=reason)
            if outcome.verdict in ("retry", "failed") and due.is_key_endpoint:
                await self._count_failure(conn, due)

    async def _count_failure(self, conn: asyncpg.Connection, due: repo.Due) -> None:
        assert due.api_key_id is not None
        should_disable = await endpoints.failed(
            conn,
            due.api_key_id,
            due.endpoint_url,
            disable_after_seconds=self._policy.disable_after_seconds,
            disable_min_failures=self._policy.disable_min_failures,
        )
        if should_disable:
            await repo.disable_endpoint(
                conn, due.api_key_id, due.endpoint_url, "every attempt failed for too long"
            )
            log.warning("webhook_endpoint_auto_disabled", endpoint=due.endpoint_url)

    async def _gone(self, conn: asyncpg.Connection, due: repo.Due, posted: Posted) -> None:
        # 410 Gone: the receiver asks us to stop. A job's own callback just ends; the key's
        # default endpoint is disabled until its owner re-enables it.
        if due.rule_id is not None and self._notices is not None:
            # A notification rule's target (Slack 400/403/404/410): the rule is disabled.
            reason = posted.error or f"HTTP {posted.status}"
            await repo.finish(
                conn,
                due.id,
                "cancelled",
                status_code=posted.status,
                error=reason,
                latency_ms=posted.latency_ms,
            )
            await self._notices.gone(conn, due, reason)
            return
        await repo.finish(
            conn,
            due.id,
            "cancelled",
            status_code=410,
            error="endpoint answered 410 Gone",
            latency_ms=posted.latency_ms,
        )
        if due.is_key_endpoint and due.api_key_id is not None:
            await repo.disable_endpoint(conn, due.api_key_id, due.endpoint_url, "410 Gone")
        log.warning("webhook_endpoint_gone", endpoint=due.endpoint_url)
