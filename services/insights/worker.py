"""The insights handler: one TranscriptReady in, categories and (when configured) the chat
model's insights out, stored and announced once.

For each delivery (`Insights.handle`):

1. the job, from its row: gone or deleted -> nothing (a deleted job's earlier attempt may have
   written its JSON: that key goes back to the deletion); no longer completed (requeued for a
   new transcription, which will announce itself) -> nothing; this event already answered (a
   redelivery, a replay) -> nothing, so the model is never billed twice for one transcript;
2. the redacted transcript JSON the event names (libs.transcript.Transcript);
3. the key's categories evaluated on it (`Categorizer`: libs.categories, offline, always);
4. the chat model asked (`InsightsModel`, libs.llm) when one is configured and insights are on
   for the key, with the key's (or campaign's) template and the redacted turns only;
5. the JSON beside the transcripts (libs.layout.insights_key), then ONE transaction: the job
   locked and still completed, its category matches, its `insights` row and InsightsReady
   through the outbox. A job deleted meanwhile gets nothing, and the JSON goes back to the
   deletion.

A 401/403/404 (`ModelMisconfigured`: a key or model name to fix) pauses the consumer instead,
probing the key every minute, so a misconfiguration fails no call.
How the model failing ends: `ModelUnavailable` (429, 5xx, no connection, after the client's
own retries) puts the message back (`Retry`, with the server's Retry-After) and on its last
delivery records `failed` / `model_unavailable`; `InsightsFailed` (refusal, length, an answer
invalid after a repair) records `failed` with its reason. Neither ever crash-loops.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import asyncpg
import msgspec
import structlog

from libs import apikeys, outbox
from libs.blobstore import BlobNotFound, BlobStoreRefused, BlobStoreUnavailable
from libs.bus import Delivery, Pause, Reject, Retry
from libs.categories import store as categories
from libs.categories.call import Call
from libs.categories.evaluate import evaluate
from libs.contracts import (
    CategoryMatch,
    Conversation,
    Insights,
    InsightsReady,
    TranscriptReady,
    insights_source_decoder,
    new_event_id,
    subjects,
    utcnow,
)
from libs.db import DatabaseUnavailable
from libs.insights import store
from libs.insights.document import InsightsDocument
from libs.jobs import deletion, record
from libs.layout import insights_key, loggable
from libs.llm import template as templates
from libs.llm.insights import (
    InsightsFailed,
    InsightsModel,
    ModelMisconfigured,
    ModelUnavailable,
    Turn,
)
from libs.metrics import INSIGHTS, INSIGHTS_MODEL_UNAVAILABLE, INSIGHTS_TOKENS
from libs.redaction import Policy
from libs.transcript import Transcript
from services.insights import redaction

log = structlog.get_logger()

Outcome = Literal[
    "completed",
    "failed",
    "not_configured",
    "no_job",
    "deleted",
    "not_completed",
    "already_answered",
    "error",
]
MODEL_UNAVAILABLE = "model_unavailable"
# After a 401/403/404 from the model server: fetch nothing for this long, then probe the key.
MISCONFIGURED_PAUSE_SECONDS = 60.0
NO_MODEL = "no_model"
DISABLED = "disabled_for_key"


class ObjectStore(Protocol):
    """What the handler needs of a BlobStore."""

    async def get_bytes(self, key: str) -> bytes: ...
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> object: ...
    async def delete(self, key: str) -> None: ...


class Categorizer(Protocol):
    """The key's categories evaluated on a call (libs.categories; tests may give their own)."""

    async def categorize(
        self, conn: asyncpg.Connection, key_id: uuid.UUID, call: Call
    ) -> tuple[CategoryMatch, ...]: ...


class KeyCategories:
    """The categories a key manages (PUT /api/categories/{name}), evaluated offline."""

    async def categorize(
        self, conn: asyncpg.Connection, key_id: uuid.UUID, call: Call
    ) -> tuple[CategoryMatch, ...]:
        return evaluate(await categories.for_key(conn, key_id), call)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What this transcript's insights are, before they are stored."""

    status: store.Status
    insights: Insights | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Handled:
    """How a delivery ended when it did not raise, for the summary log line."""

    outcome: Outcome
    verdict: Verdict | None = None
    categories: tuple[str, ...] = ()

    def log_fields(self) -> dict[str, object]:
        if self.verdict is None:
            return {}
        usage = self.verdict.insights.usage if self.verdict.insights is not None else None
        return {
            "reason": self.verdict.reason,
            "categories": list(self.categories),
            "tokens": None if usage is None else usage.total_tokens,
        }


class InsightsWorker:
    """Handles TranscriptReady deliveries of the `insights` durable consumer.

    `model` is None when no chat model is configured (INSIGHTS_MODEL unset): every transcript
    then gets its categories and `not_configured`. `model_slots` bounds the requests in flight
    at the model (INSIGHTS_CONCURRENCY); the consumer runs more handlers than that, so one
    call's reads and writes overlap the others' wait on the model
    (bench/insights_service_bench.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        objects: ObjectStore,
        *,
        model: InsightsModel | None,
        categorizer: Categorizer | None = None,
        model_slots: int | None = None,
        redaction_timeout: float = 60.0,
    ) -> None:
        self._pool = pool
        self._redaction_timeout = redaction_timeout
        self._objects = objects
        self._model = model
        self._categorizer = categorizer or KeyCategories()
        self._model_slots = asyncio.Semaphore(model_slots) if model_slots else None

    async def handle(self, delivery: Delivery) -> None:
        try:
            event = insights_source_decoder.decode(delivery.data)
            job_id = uuid.UUID(event.audio_file_id)
        except (msgspec.DecodeError, ValueError) as exc:
            log.error("undecodable_event", subject=delivery.subject, error=str(exc))
            raise Reject(f"undecodable TranscriptReady: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            audio_file_id=event.audio_file_id,
            trace_id=event.trace_id,
            event_id=event.event_id,
            attempt=delivery.num_delivered,
        ):
            started = time.perf_counter()
            handled = Handled("error")
            try:
                handled = await self.process(event, job_id, delivery)
            except DatabaseUnavailable as exc:
                raise Retry(f"Postgres unavailable: {exc}") from exc
            except (BlobStoreUnavailable, BlobStoreRefused) as exc:
                raise Retry(f"object storage unavailable: {exc}") from exc
            finally:
                # The one summary line of the message.
                log.info(
                    "insights_handled",
                    outcome=handled.outcome,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    **handled.log_fields(),
                )

    async def process(
        self, event: TranscriptReady, job_id: uuid.UUID, delivery: Delivery
    ) -> Handled:
        job = await record.load(self._pool, job_id)
        if job is None:
            return Handled("no_job")  # outbox rows commit with their job: a hand-made event
        key = insights_key(str(job.id), campaign=job.campaign_name, prefix=job.transcript_prefix)
        if job.status == "deleted":
            if delivery.num_delivered > 1:
                # An attempt before may have died between its upload and its transaction.
                await deletion.hand_back(self._pool, self._objects, job.id, [key])
            return Handled("deleted")
        if job.status != "completed":
            return Handled("not_completed")
        if await store.answered(self._pool, job.id, event.event_id):
            return Handled("already_answered")
        key_row = await apikeys.get(self._pool, str(job.api_key_id))
        policy = redaction.policy_for(job.redact, "" if key_row is None else key_row.redact)
        transcript = await self._transcript(event)
        matches: tuple[CategoryMatch, ...] = ()
        if transcript is None:
            verdict = Verdict("failed", reason="transcript_unavailable")
        elif (transcript := await self._redacted(transcript, policy)) is None:
            verdict = Verdict("failed", reason=redaction.REDACTION_FAILED)
        else:
            call = Call.from_transcript(
                transcript, _conversation(event, transcript), _counts(event)
            )
            async with self._pool.acquire() as conn:
                matches = await self._categorizer.categorize(conn, job.api_key_id, call)
                template = await self._template(conn, job.api_key_id, job.campaign_name)
            if isinstance(template, str):
                verdict = Verdict("not_configured", reason=template)
            else:
                verdict = await self._ask(template, _turns(call), job.campaign_name, delivery)
                verdict = await self._redacted_answer(verdict, policy)
        ready = InsightsReady(
            event_id=new_event_id(),
            occurred_at=utcnow(),
            trace_id=event.trace_id,
            audio_file_id=str(job.id),
            tenant=job.tenant_prefix,
            status=verdict.status,
            campaign=job.campaign_name,
            recording_id=job.recording_id,
            categories=matches,
            insights=verdict.insights,
            reason=verdict.reason,
        )
        if not await self._store(job.id, key, ready, event.event_id):
            return Handled("deleted")
        INSIGHTS.labels(status=verdict.status).inc()
        if verdict.insights is not None:
            INSIGHTS_TOKENS.labels(kind="prompt").inc(verdict.insights.usage.prompt_tokens)
            INSIGHTS_TOKENS.labels(kind="completion").inc(verdict.insights.usage.completion_tokens)
        return Handled(verdict.status, verdict=verdict, categories=tuple(m.name for m in matches))

    async def _transcript(self, event: TranscriptReady) -> Transcript | None:
        """The stored (redacted) transcript; None when it is missing or unreadable."""
        try:
            raw = await self._objects.get_bytes(event.keys.json)
        except BlobNotFound:
            log.warning("transcript_missing", key=loggable(event.keys.json))
            return None
        try:
            return msgspec.json.decode(raw, type=Transcript)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("transcript_unreadable", key=loggable(event.keys.json), error=str(exc))
            return None

    async def _redacted(self, transcript: Transcript, policy: Policy) -> Transcript | None:
        """The call with the job's and its key's policy applied; None when redaction failed
        (nothing of the call is then read, categorized or sent)."""
        try:
            return await redaction.redact_call(transcript, policy, timeout=self._redaction_timeout)
        except redaction.RedactionFailed as exc:
            log.error("insights_redaction_failed", side="call", error=str(exc))
            return None

    async def _redacted_answer(self, verdict: Verdict, policy: Policy) -> Verdict:
        """The model's answer with its free text redacted; failed (keeping none of it) when
        redaction failed."""
        if verdict.insights is None:
            return verdict
        try:
            insights = await redaction.redact_answer(
                verdict.insights, policy, timeout=self._redaction_timeout
            )
        except redaction.RedactionFailed as exc:
            log.error("insights_redaction_failed", side="answer", error=str(exc))
            return Verdict("failed", reason=redaction.REDACTION_FAILED)
        return Verdict(verdict.status, insights=insights, reason=verdict.reason)

    async def _template(
        self, conn: asyncpg.Connection, key_id: uuid.UUID, campaign: str
    ) -> templates.InsightTemplate | str:
        """The template to ask with, or why the model is not asked."""
        if self._model is None:
            return NO_MODEL
        if not await templates.insights_enabled(conn, key_id):
            return DISABLED
        return await templates.template_for(conn, key_id, campaign)

    async def _ask(
        self,
        template: templates.InsightTemplate,
        turns: tuple[Turn, ...],
        campaign: str,
        delivery: Delivery,
    ) -> Verdict:
        assert self._model is not None
        try:
            if self._model_slots is None:
                insights = await self._model.ask(template, turns, campaign=campaign)
            else:
                async with self._model_slots:
                    insights = await self._model.ask(template, turns, campaign=campaign)
        except ModelUnavailable as exc:
            INSIGHTS_MODEL_UNAVAILABLE.inc()
            if delivery.last_attempt:
                log.warning("insights_model_gave_up", error=str(exc))
                return Verdict("failed", reason=MODEL_UNAVAILABLE)
            if isinstance(exc, ModelMisconfigured):
                # No call can succeed until the key or model is fixed: stop fetching, probe.
                raise Pause(
                    f"chat model refused: {exc}",
                    seconds=MISCONFIGURED_PAUSE_SECONDS,
                    probe=self._model.check,
                ) from exc
            raise Retry(f"chat model unavailable: {exc}", delay=exc.retry_after) from exc
        except InsightsFailed as exc:
            return Verdict("failed", reason=exc.reason)
        return Verdict("completed", insights=insights)

    async def _store(
        self, job_id: uuid.UUID, key: str, ready: InsightsReady, source_event_id: str
    ) -> bool:
        """The JSON, then the row, the matches and the event in one transaction; False (and
        nothing kept) when the job was deleted or requeued meanwhile."""
        if await self._gone(job_id):
            return False
        document = InsightsDocument.of(ready)
        await self._objects.put_bytes(key, msgspec.json.encode(document), "application/json")
        new = store.NewInsights(
            audio_file_id=job_id,
            tenant=ready.tenant,
            status=ready.status,  # type: ignore[arg-type]  # a Verdict's status
            reason=ready.reason,
            insights=ready.insights,
            source_event_id=source_event_id,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            status = await store.guard(conn, job_id)
            if status == "completed":
                await categories.save_matches(conn, job_id, ready.categories)
                await store.save(conn, new)
                await outbox.enqueue(conn, ready, subjects.insights_ready(ready.tenant))
        if status == "deleted":
            # Deleted meanwhile: its deletion takes this key too. (A job requeued meanwhile
            # keeps it: its new transcript's insights replace it under the same key.)
            await deletion.hand_back(self._pool, self._objects, job_id, [key])
        return status == "completed"

    async def _gone(self, job_id: uuid.UUID) -> bool:
        job = await record.load(self._pool, job_id)
        return job is None or job.status != "completed"


def _conversation(event: TranscriptReady, transcript: Transcript) -> Conversation | None:
    return event.conversation if event.conversation is not None else transcript.conversation


def _turns(call: Call) -> tuple[Turn, ...]:
    """What the model reads: the call's redacted utterances, exactly as the categories saw them
    (utterances, else segments, else the whole text)."""
    return tuple(
        Turn(start=u.start, end=u.end, role=u.role, speaker=u.speaker, text=u.text)
        for u in call.utterances
    )


def _counts(event: TranscriptReady) -> Mapping[str, int]:
    return {} if event.redaction is None else event.redaction.counts


__all__ = ["Categorizer", "InsightsWorker", "KeyCategories", "ObjectStore"]
