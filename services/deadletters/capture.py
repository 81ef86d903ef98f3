"""Turning dead-letter advisories into `dead_letters` rows (a handler of the deadletters consumer).

For each advisory the original message is read back from TRANSCRIBE by sequence (it is still
there: Limits retention), so the row says which job and event died, not just a number. A job
whose AudioStored ran out of deliveries would otherwise sit in 'queued' for ever, since
JetStream never redelivers it: it is failed here, with its TranscriptionFailed event.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext

from libs.bus import BusUnavailable, Delivery, Reject, Retry, jetstream
from libs.db import DatabaseUnavailable
from libs.deadletters import records
from libs.jobs import lifecycle
from libs.notifications import dead_letters as dead_letter_notices
from libs.observability.metrics import DEAD_LETTERS
from services.deadletters.advisory import advisory_decoder, kind_of

log = structlog.get_logger()


class DeadLetterCapture:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext) -> None:
        self._pool = pool
        self._js = js

    async def handle(self, delivery: Delivery) -> None:
        kind = kind_of(delivery.subject)
        if kind is None:
            raise Reject(f"not a dead-letter advisory: {delivery.subject}")
        try:
            advisory = advisory_decoder.decode(delivery.data)
        except msgspec.DecodeError as exc:
            raise Reject(f"undecodable advisory: {exc}") from exc
        subject, payload = await self._original(advisory.stream, advisory.stream_seq)
        event = _peek(payload)
        audio_file_id = _uuid(event.get("audio_file_id"))
        dl = records.NewDeadLetter(
            kind=kind,
            stream=advisory.stream,
            consumer=advisory.consumer,
            stream_seq=advisory.stream_seq,
            deliveries=advisory.deliveries,
            reason=advisory.reason,
            subject=subject,
            event_type=_str(event.get("type")),
            event_id=_str(event.get("event_id")),
            audio_file_id=audio_file_id,
            tenant_prefix=_str(event.get("tenant")),
            payload=payload,
            advisory=json.loads(delivery.data),
            occurred_at=advisory.timestamp,
        )
        with structlog.contextvars.bound_contextvars(
            audio_file_id=str(audio_file_id) if audio_file_id else None,
            trace_id=_str(event.get("trace_id")),
        ):
            try:
                new_id = await self._record(dl)
                if new_id is not None and kind == "max_deliveries":
                    await self._fail_stuck_job(dl, event)
            except DatabaseUnavailable as exc:
                raise Retry(f"Postgres unavailable: {exc}") from exc
            if new_id is not None:
                DEAD_LETTERS.labels(kind=kind, consumer=advisory.consumer).inc()
            log.warning(
                "dead_letter_recorded",
                dead_letter_id=new_id,
                kind=kind,
                consumer=advisory.consumer,
                stream_seq=advisory.stream_seq,
                deliveries=advisory.deliveries,
                event_type=dl.event_type,
                duplicate=new_id is None,
            )

    async def _record(self, dl: records.NewDeadLetter) -> int | None:
        """The dead letter and its notifications (rules on `dead_lettered`) in one transaction:
        a notification is never lost, nor recorded twice (unique per rule and dead letter)."""
        async with self._pool.acquire() as conn, conn.transaction():
            new_id = await records.insert(conn, dl)
            if new_id is not None and dl.audio_file_id is not None:
                await dead_letter_notices.record(conn, new_id, dl)
        return new_id

    async def _original(self, stream: str, seq: int) -> tuple[str | None, bytes | None]:
        try:
            stored = await jetstream.stored_message(self._js, stream, seq)
        except BusUnavailable as exc:
            raise Retry(str(exc)) from exc
        # None: aged out (MaxAge) or deleted; the advisory alone is still worth keeping.
        return stored if stored is not None else (None, None)

    async def _fail_stuck_job(self, dl: records.NewDeadLetter, event: dict[str, Any]) -> None:
        if dl.event_type != "audio.stored" or dl.audio_file_id is None:
            return
        job = await lifecycle.load_job(self._pool, str(dl.audio_file_id))
        if job is None or job.status in ("completed", "failed"):
            return
        await lifecycle.fail(
            self._pool,
            job,
            code="max_deliveries",
            detail=f"JetStream gave up after {dl.deliveries} deliveries to {dl.consumer}",
            trace_id=_str(event.get("trace_id")),
        )


def _peek(payload: bytes | None) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
