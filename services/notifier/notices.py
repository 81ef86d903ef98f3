"""Notifications to people (docs/notifications.md), the notifier's second kind of delivery.

Three parts, each durable in Postgres:
- `record`: the Scheduler hands every event here; each rule of the job's key that asks for it
  gets one `notification_items` row (unique per rule and event: a replay notifies nothing more).
- `run`: flushes rules whose quiet period is over (at most one message per rule per
  NOTIFY_INTERVAL_SECONDS; a digest of what arrived in between) into `webhook_deliveries` rows.
- `send`: the Deliverer's sender for those rows: a Slack incoming-webhook POST or an e-mail,
  judged by what Slack or the SMTP server answered; the retry schedule and the attempt log are
  the webhooks' own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg
import msgspec
import structlog

from libs.contracts import InsightsReady, TranscriptionFailed, TranscriptReady, TranscriptResult
from libs.db import DatabaseUnavailable
from libs.db.listen import sleep_until
from libs.errors import InvalidInput
from libs.mail import Mail, Mailer, MailPermanent, MailTemporary
from libs.notifications import events, items, message, rules, slack
from libs.safehttp import BlockedUrl, SafeHttpClient, UpstreamError
from libs.webhooks import queue
from services.notifier.worker import Posted, retry_after_seconds

log = structlog.get_logger()

PURGE_EVERY = 3600.0
# Sent items are kept at least as long as the stream keeps events (replays find them).
KEEP_SENT_DAYS = 45


class Notices:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: SafeHttpClient,
        mailer: Mailer | None,
        *,
        interval: float,
        public_base_url: str,
        timeout: float = 15.0,
        poll_interval: float = 5.0,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._http = http
        self._mailer = mailer
        self._interval = interval
        self._base = public_base_url.rstrip("/")
        self._timeout = timeout
        self._poll_interval = poll_interval
        self.on_queued = on_queued
        self._wake = asyncio.Event()

    # ---- events -> items ----------------------------------------------------------------

    async def record(self, event: TranscriptResult | InsightsReady) -> int:
        """Queue the event for every rule that asks for it; returns how many were new."""
        if not isinstance(event, TranscriptReady | TranscriptionFailed | InsightsReady):
            return 0  # progress and deletions notify nobody
        try:
            job_id = uuid.UUID(event.audio_file_id)
        except ValueError:
            return 0
        job = await items.job_facts(self._pool, job_id)
        if job is None:
            return 0
        item = events.item_for(event, job)
        if item is None:
            return 0
        n = await items.record(self._pool, job, event.event_id, item)
        if n:
            self._wake.set()
            log.info("notifications_recorded", rules=n, events=list(item.events))
        return n

    # ---- items -> messages --------------------------------------------------------------

    async def flush_due(self) -> int:
        """One message for each rule whose quiet period is over; returns how many."""
        queued = 0
        for rule_id in await items.due_rules(self._pool):
            try:
                delivery_id = await items.flush_rule(
                    self._pool, rule_id, interval=self._interval, public_base_url=self._base
                )
            except DatabaseUnavailable:
                raise
            except Exception:
                # One rule that cannot be flushed (a bug, a bad row) must not stop the others;
                # its items stay waiting and are tried again on the next round.
                log.exception("notification_flush_crashed", rule_id=str(rule_id))
                continue
            if delivery_id is not None:
                queued += 1
        if queued and self.on_queued is not None:
            self.on_queued()
        return queued

    async def run(self, stop: asyncio.Event) -> None:
        last_purge = float("-inf")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            wait = self._poll_interval
            try:
                await self.flush_due()
                due_in = await items.next_due_in(self._pool)
                if due_in is not None:
                    wait = min(max(due_in, 0.05), self._poll_interval)
                if loop.time() - last_purge > PURGE_EVERY:
                    last_purge = loop.time()
                    await items.purge_sent(self._pool, KEEP_SENT_DAYS)
            except DatabaseUnavailable as exc:
                log.warning("notifications_db_unavailable", error=str(exc))
                wait = 1.0
            await sleep_until(stop, wait, self._wake)

    # ---- sending (the Deliverer's sender for slack/email rows) --------------------------

    async def send(self, due: queue.Due) -> Posted:
        dest = await rules.destination(self._pool, due.rule_id) if due.rule_id else None
        if dest is None:
            return Posted(error="the notification rule was removed", permanent=True)
        if dest.disabled:
            return Posted(error="the notification rule is disabled", permanent=True)
        if due.channel == "slack" and dest.slack_url:
            if b'"text"' not in due.payload:
                # Scrubbed when its job was deleted (libs/webhooks/queue.py): nothing to send.
                return Posted(error="the message's job was deleted", permanent=True)
            return await self._slack(dest.slack_url, due.payload)
        if due.channel == "email" and dest.emails:
            return await self._mail(dest.emails, due.payload)
        return Posted(error=f"the rule has no {due.channel} target", permanent=True)

    async def _slack(self, url: str, body: bytes) -> Posted:
        try:
            result = await self._http.post(
                url,
                body=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                max_response_bytes=1024,
            )
        except BlockedUrl as exc:
            # The URL's path is a secret: an HTTP client's message that quotes it is masked.
            return Posted(
                error=rules.without_slack_url(f"blocked: {exc.code}: {exc.message}", url),
                permanent=exc.code != "unresolvable_host",
            )
        except UpstreamError as exc:
            return Posted(error=rules.without_slack_url(f"{exc.code}: {exc.message}", url))
        verdict = slack.judge(result.status, result.body)
        return Posted(
            status=result.status,
            error=None if verdict == "ok" else slack.reason(result.status, result.body),
            retry_after=retry_after_seconds(result.headers.get("Retry-After")),
            gone=verdict == "disable",
            latency_ms=int(result.latency_s * 1000),
        )

    async def _mail(self, to: tuple[str, ...], body: bytes) -> Posted:
        if self._mailer is None:
            return Posted(error="no mail server: SMTP_URL is not set")
        try:
            parts = message.mail_parts_decoder.decode(body)
        except msgspec.DecodeError:
            # Scrubbed when its job was deleted (libs/webhooks/queue.py): nothing to send.
            return Posted(error="the message's job was deleted", permanent=True)
        started = time.monotonic()
        try:
            mail = Mail(to=to, subject=parts.subject, text=parts.text, html=parts.html)
        except InvalidInput as exc:
            return Posted(error=f"mail not sendable: {exc.detail}", permanent=True)
        try:
            await self._mailer.send(mail)
        except MailPermanent as exc:
            return Posted(error=f"mail refused: {exc.reason}", permanent=True)
        except MailTemporary as exc:
            return Posted(error=f"mail not sent: {exc.reason}")
        return Posted(delivered=True, latency_ms=int((time.monotonic() - started) * 1000))

    async def gone(self, conn: asyncpg.Connection, due: queue.Due, reason: str) -> None:
        """Slack said the webhook will not work again: the rule is disabled with Slack's words,
        what is queued for it cancelled (kept in the log)."""
        assert due.rule_id is not None
        async with conn.transaction():
            await rules.disable(conn, due.rule_id, reason)
            await queue.cancel_for_rule(conn, due.rule_id, reason)
        log.warning("notification_rule_disabled", rule_id=str(due.rule_id), reason=reason)
