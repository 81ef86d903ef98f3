"""The notifier: turns transcript events into durable webhook deliveries, then delivers them.

Two halves. `Scheduler.handle` (a JetStream consumer handler) writes one `webhook_deliveries`
row per endpoint and acks; the row is the durable retry queue, so a notifier restarted in the
middle of a 5-hour backoff still delivers on time. `Deliverer` POSTs due rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog

from libs.bus import Delivery, Reject, Retry
from libs.contracts import TranscriptionFailed, TranscriptReady, transcript_result_decoder
from libs.db import CONNECTION_ERRORS
from libs.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from libs.safehttp import BlockedUrl, SafeHttpClient, UpstreamError
from services.notifier import payload, signing
from services.notifier import repository as repo

log = structlog.get_logger()

# Delay before attempt n+1 after n failed attempts: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h (the schedule of the best webhook providers).
RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
LEASE_SECONDS = 120.0
CHANNEL = "media_pipeline_webhooks"
MAX_RETRY_AFTER = 36000.0


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, *, public_base_url: str) -> None:
        self._pool = pool
        self._base = public_base_url.rstrip("/")

    async def handle(self, delivery: Delivery) -> None:
        try:
            event = transcript_result_decoder.decode(delivery.data)
        except msgspec.DecodeError as exc:
            log.error("undecodable_event", subject=delivery.subject, error=str(exc))
            raise Reject(f"undecodable event: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            audio_file_id=event.audio_file_id, trace_id=event.trace_id, event_id=event.event_id
        ):
            try:
                n = await self._schedule(event)
            except CONNECTION_ERRORS as exc:
                raise Retry(f"Postgres unavailable: {exc}") from exc
            log.info("webhooks_scheduled", endpoints=n, type=type(event).__name__)

    async def _schedule(self, event: TranscriptReady | TranscriptionFailed) -> int:
        try:
            job_id = uuid.UUID(event.audio_file_id)
        except ValueError as exc:
            raise Reject("bad audio_file_id") from exc
        job = await self._pool.fetchrow(repo.JOB_FOR_EVENT, job_id)
        if job is None:
            raise Reject(f"no job {event.audio_file_id}")
        endpoints: list[str] = []
        if job["callback_url"]:
            endpoints.append(job["callback_url"])
        if job["key_webhook_url"] and job["webhook_disabled_at"] is None:
            endpoints.append(job["key_webhook_url"])
        endpoints = list(dict.fromkeys(endpoints))
        if not endpoints:
            return 0
        if isinstance(event, TranscriptReady):
            body = payload.completed_body(
                event,
                job,
                job["text"] or "",
                transcript_url=f"{self._base}/api/media/transcript/{event.audio_file_id}.txt",
            )
            event_type = payload.COMPLETED
        else:
            body = payload.failed_body(event, job)
            event_type = payload.FAILED
        async with self._pool.acquire() as conn, conn.transaction():
            for url in endpoints:
                await conn.execute(
                    repo.SCHEDULE,
                    uuid.UUID(event.event_id),
                    event_type,
                    job_id,
                    job["api_key_id"],
                    url,
                    body,
                )
        return len(endpoints)


def next_delay(attempts_done: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt, or None when the schedule is exhausted."""
    if attempts_done >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE[attempts_done - 1]
    jittered = base * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        return max(jittered, min(retry_after, MAX_RETRY_AFTER))
    return jittered


def _retry_after(headers: object) -> float | None:
    value = getattr(headers, "get", lambda _k: None)("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: SafeHttpClient,
        *,
        timeout: float = 15.0,
        concurrency: int = 16,
        poll_interval: float = 5.0,
    ) -> None:
        self._pool = pool
        self._http = http
        self._timeout = timeout
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self.delivered = 0

    async def deliver_due(self) -> int:
        due = await repo.claim_due(self._pool, self._concurrency, LEASE_SECONDS)
        if due:
            await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

    async def run_until_idle(self) -> int:
        total = 0
        while (n := await self.deliver_due()) > 0:
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    n = await self.deliver_due()
                    if n:
                        continue
                    wait = await self._pool.fetchval(repo.NEXT_DUE)
                except CONNECTION_ERRORS as exc:
                    log.warning("notifier_db_unavailable", error=str(exc))
                    wait = 1.0
                timeout = (
                    self._poll_interval
                    if wait is None
                    else min(max(float(wait), 0.01), self._poll_interval)
                )
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                try:
                    await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, stop: asyncio.Event) -> None:
        def on_notify(*_: object) -> None:
            self._wake.set()

        while not stop.is_set():
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(CHANNEL, on_notify)
                    self._wake.set()
                    try:
                        while not stop.is_set() and not conn.is_closed():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), timeout=5.0)
                            await conn.execute("SELECT 1")
                    finally:
                        with contextlib.suppress(*CONNECTION_ERRORS):
                            await conn.remove_listener(CHANNEL, on_notify)
            except CONNECTION_ERRORS as exc:
                log.info("notifier_listen_reconnect", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def _attempt(self, due: repo.Due) -> None:
        with structlog.contextvars.bound_contextvars(
            webhook_id=due.event_id, audio_file_id=str(due.audio_file_id), attempt=due.attempts + 1
        ):
            secrets: list[str] = []
            if due.api_key_id is not None:
                key = await self._pool.fetchrow(repo.KEY_SECRETS, due.api_key_id)
                if key is not None:
                    secrets = [
                        s for s in (key["webhook_secret"], key["webhook_secret_previous"]) if s
                    ]
            # Each attempt is signed with its own timestamp, so receivers' replay windows hold.
            headers = signing.headers(secrets, due.event_id, datetime.now(UTC), due.payload)
            status: int | None = None
            error: str | None = None
            retry_after: float | None = None
            latency_ms = 0
            try:
                result = await self._http.post(
                    due.endpoint_url, body=due.payload, headers=headers, timeout=self._timeout
                )
                status = result.status
                latency_ms = int(result.latency_s * 1000)
                WEBHOOK_LATENCY.observe(result.latency_s)
                retry_after = _retry_after(result.headers) if status in (429, 503) else None
            except BlockedUrl as exc:
                await self._finish(due, "failed", None, f"blocked: {exc.message}", 0)
                WEBHOOK_ATTEMPTS.labels(outcome="blocked").inc()
                log.warning("webhook_blocked", code=exc.code)
                return
            except UpstreamError as exc:
                error = f"{exc.code}: {exc.message}"
            await self._pool.execute(
                repo.RECORD_ATTEMPT, due.id, due.attempts + 1, status, latency_ms, error
            )
            if status is not None and 200 <= status < 300:
                await self._finish(due, "succeeded", status, None, latency_ms)
                self.delivered += 1
                WEBHOOK_ATTEMPTS.labels(outcome="succeeded").inc()
                log.info("webhook_delivered", status=status, ms=latency_ms)
                return
            if status == 410:
                await self._gone(due, latency_ms)
                WEBHOOK_ATTEMPTS.labels(outcome="gone").inc()
                return
            reason = error or f"HTTP {status}"
            delay = next_delay(due.attempts + 1, retry_after)
            if delay is None:
                await self._finish(due, "failed", status, reason, latency_ms)
                WEBHOOK_ATTEMPTS.labels(outcome="failed").inc()
                log.warning("webhook_gave_up", status=status, error=reason)
                return
            await self._pool.execute(repo.RESCHEDULE, due.id, status, reason, latency_ms, delay)
            WEBHOOK_ATTEMPTS.labels(outcome="retry").inc()
            log.info("webhook_retry_scheduled", status=status, error=reason, delay=round(delay, 1))

    async def _finish(
        self, due: repo.Due, state: str, status: int | None, error: str | None, latency_ms: int
    ) -> None:
        await self._pool.execute(repo.FINISH, due.id, state, status, error, latency_ms)

    async def _gone(self, due: repo.Due, latency_ms: int) -> None:
        # 410 Gone: the receiver asks us to stop; disable the endpoint for this key.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                repo.FINISH, due.id, "cancelled", 410, "endpoint answered 410 Gone", latency_ms
            )
            if due.api_key_id is not None:
                await conn.execute(
                    repo.DISABLE_KEY_WEBHOOK, due.api_key_id, due.endpoint_url, "410 Gone"
                )
                await conn.execute(
                    repo.CANCEL_PENDING_FOR_ENDPOINT, due.api_key_id, due.endpoint_url
                )
        log.warning("webhook_endpoint_gone", endpoint=due.endpoint_url)
