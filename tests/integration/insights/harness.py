"""Building blocks for the insights tests: completed jobs made through the transcriber's own
lifecycle functions (row, transcript JSON in the bucket, TranscriptReady in the outbox), an
honest in-memory chat model, and deliveries for calling the handler directly."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from libs.blobstore import S3BlobStore
from libs.bus import Delivery
from libs.contracts import (
    Insights,
    RedactionSummary,
    TokenUsage,
    TranscriptReady,
    encode,
    subjects,
)
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.llm.insights import Turn
from libs.llm.template import InsightTemplate
from libs.transcript import Transcript, Utterance
from libs.transcript.render import render_json
from tests.integration.notifier.harness import Key

INSERT_JOB = """
INSERT INTO media_pipeline.audio_files
    (id, api_key_id, tenant_prefix, phone, campaign_name, recording_id, bucket, b2_object_key,
     content_type, size_bytes, sha256, callback_url, transcript_prefix)
VALUES ($1, $2, $3, '+441632960001', 'winback', $4, 'insights-bucket', $5, 'audio/wav', 1, 'x',
        $6, $3)
"""

CANCEL_CALL = (
    ("agent", 0.0, 3.0, "Hello, thanks for calling Acme, how can I help?"),
    ("customer", 3.5, 6.0, "I want to cancel my subscription."),
    ("agent", 6.5, 9.0, "I am sorry to hear that, let me see what I can do."),
)


def transcript(turns: Sequence[tuple[str, float, float, str]] = CANCEL_CALL) -> Transcript:
    utterances = tuple(
        Utterance(
            speaker=f"Channel {0 if role == 'agent' else 1}", role=role, start=s, end=e, text=t
        )
        for role, s, e, t in turns
    )
    return Transcript(
        text=" ".join(u.text for u in utterances),
        language="en",
        duration=max((u.end for u in utterances), default=1.0),
        model="whisper-1",
        engine="openai",
        utterances=utterances,
    )


@dataclass(frozen=True)
class Completed:
    job: lifecycle.ProcessingJob
    event: TranscriptReady
    key: Key

    @property
    def id(self) -> str:
        return str(self.job.id)


async def complete_job(
    pool: asyncpg.Pool,
    objects: S3BlobStore,
    key: Key,
    *,
    call: Transcript | None = None,
    callback_url: str | None = None,
    redaction: RedactionSummary | None = None,
) -> Completed:
    """A job as the transcriber leaves it: completed, its transcript JSON stored, its
    TranscriptReady in the outbox (the event returned)."""
    job_id = uuid.uuid4()
    object_key = f"{key.tenant}/winback/audio/441632960001/{job_id}.wav"
    await pool.execute(
        INSERT_JOB, job_id, key.id, key.tenant, f"rec-{job_id.hex[:6]}", object_key, callback_url
    )
    job = await lifecycle.load_job(pool, str(job_id))
    assert job is not None
    assert await lifecycle.mark_processing(pool, job, force=False)
    text = call or transcript()
    keys = transcript_keys(object_key, campaign="winback", prefix=key.tenant)
    await objects.put_bytes(keys.json, render_json(text), "application/json")
    event = await lifecycle.complete(
        pool, job, text, keys, force=False, trace_id=f"trace-{job_id.hex[:8]}", summary=redaction
    )
    assert event is not None
    return Completed(job=job, event=event, key=key)


def delivery(event: TranscriptReady, *, attempt: int = 1, max_deliver: int = 10) -> Delivery:
    """A delivery for calling the handler directly (it never touches the message itself)."""
    return Delivery(
        msg=cast(Any, None),
        subject=subjects.transcript_ready(event.tenant),
        data=encode(event),
        num_delivered=attempt,
        max_deliver=max_deliver,
        stream_seq=1,
    )


def insights(model: str = "fake-chat", **fields: Any) -> Insights:
    values: dict[str, Any] = {
        "summary": "The customer wants to cancel; the agent offers to help.",
        "reason": "cancellation",
        "outcome": "retained",
        "usage": TokenUsage(prompt_tokens=120, completion_tokens=30, total_tokens=150),
    }
    values.update(fields)
    return Insights(model=model, **values)


Answer = Insights | BaseException


@dataclass
class FakeModel:
    """An InsightsModel that answers from a script (an Insights, or an exception to raise) and
    records what it was asked. `before_answer` runs first (a test deleting the job meanwhile)."""

    script: list[Answer] = field(default_factory=list)
    asked: list[tuple[InsightTemplate, tuple[Turn, ...], str]] = field(default_factory=list)
    before_answer: Callable[[], Awaitable[None]] | None = None
    healthy: bool = True  # what check() answers

    async def ask(
        self, template: InsightTemplate, turns: Sequence[Turn], *, campaign: str
    ) -> Insights:
        self.asked.append((template, tuple(turns), campaign))
        if self.before_answer is not None:
            await self.before_answer()
        answer = self.script.pop(0) if self.script else insights()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def check(self) -> bool:
        return self.healthy
