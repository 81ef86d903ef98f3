"""services/insights keeps to the redaction policy on both sides of the chat model (real
Postgres and SeaweedFS): the model reads the call redacted with the job's policy and its key's
current one (a job transcribed before its key started redacting holds the values in clear),
and nothing the model answers carries a card number (or what the policy redacts) into the
row, the JSON in S3 or InsightsReady."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest

from libs import apikeys
from libs.blobstore import S3BlobStore
from libs.categories import rules
from libs.categories import store as categories
from libs.contracts import ActionItem, QuestionAnswer, insights_ready_decoder, subjects
from libs.insights import store
from libs.layout import insights_key
from libs.redaction import Policy
from services.insights.worker import InsightsWorker
from tests.integration.insights.harness import (
    CANCEL_CALL,
    Completed,
    FakeModel,
    complete_job,
    delivery,
    insights,
    transcript,
)
from tests.integration.notifier.harness import make_key

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
PHONE = "+1 415 555 0132"
PCI = Policy.parse("pci").spec
PII = Policy.parse("pii").spec


def _clear(text: str) -> None:
    """No card digits (however spaced) and no phone number in `text`."""
    assert CARD_DIGITS not in "".join(ch for ch in text if ch.isdigit() or ch == "\n")
    assert "4111" not in text and "555 0132" not in text and "5550132" not in text


async def _everything(pool: asyncpg.Pool, objects: S3BlobStore, job: Completed) -> str:
    """The insights row, the category matches, InsightsReady and the JSON in S3, as text."""
    row = await pool.fetchrow(
        "SELECT * FROM media_pipeline.insights WHERE audio_file_id = $1", job.job.id
    )
    assert row is not None
    matches = await pool.fetch(
        "SELECT * FROM media_pipeline.category_matches WHERE audio_file_id = $1", job.job.id
    )
    events = [
        insights_ready_decoder.decode(r["payload"])
        for r in await pool.fetch(
            "SELECT payload FROM media_pipeline.outbox WHERE subject = $1",
            subjects.insights_ready(job.key.tenant),
        )
    ]
    key = insights_key(job.id, campaign="winback", prefix=job.key.tenant)
    document = (await objects.get_bytes(key)).decode()
    return "\n".join(
        [
            repr(dict(row)),
            *(repr(dict(m)) for m in matches),
            *(msgspec.json.encode(e).decode() for e in events if e.audio_file_id == job.id),
            document,
        ]
    )


async def _redacting_job(
    pool: asyncpg.Pool,
    objects: S3BlobStore,
    spec: str,
    call: tuple[tuple[str, float, float, str], ...] = CANCEL_CALL,
) -> Completed:
    key = await make_key(pool, webhook_url=None)
    job = await complete_job(pool, objects, key, call=transcript(call))
    await pool.execute(
        "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1", job.job.id, spec
    )
    return job


ECHOING_ANSWER = insights(
    summary=f"The customer read their card {CARD} and asked to be called on {PHONE}.",
    reason=f"card four one one one one one one one one one one one one one one one {CARD}",
    action_items=(ActionItem(owner="agent", text=f"Charge {CARD_DIGITS} and call {PHONE}"),),
    answers=(
        QuestionAnswer(
            question="Did the agent confirm the card?",
            answer=f"yes, {CARD}",
            evidence=f"my card is {CARD}",
            start=3.5,
            end=6.0,
        ),
    ),
)


async def test_a_card_or_phone_in_the_models_answer_is_redacted_before_anything_keeps_it(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    job = await _redacting_job(ipool, objects, PII)
    model = FakeModel(script=[ECHOING_ANSWER])
    await InsightsWorker(ipool, objects, model=model).handle(delivery(job.event))

    row = await store.load(ipool, job.job.id)
    assert row is not None and row.status == "completed" and row.insights is not None
    assert row.insights.summary is not None and "[CREDIT_CARD]" in row.insights.summary
    assert "[PHONE]" in row.insights.summary
    assert row.insights.answers[0].question == "Did the agent confirm the card?"
    _clear(await _everything(ipool, objects, job))


async def test_a_card_in_the_answer_is_redacted_even_without_a_policy(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    job = await _redacting_job(ipool, objects, "")
    model = FakeModel(script=[ECHOING_ANSWER])
    await InsightsWorker(ipool, objects, model=model).handle(delivery(job.event))
    row = await store.load(ipool, job.job.id)
    assert row is not None and row.insights is not None
    assert row.insights.summary is not None and "[CREDIT_CARD]" in row.insights.summary
    everything = await _everything(ipool, objects, job)
    assert CARD not in everything and CARD_DIGITS not in everything


CALL_WITH_A_CARD = (
    *CANCEL_CALL,
    ("customer", 9.5, 14.0, f"I want to cancel, my card number is {CARD}."),
    ("customer", 14.5, 16.0, "Call me back on four one five five five five zero one three two."),
)


async def test_a_job_transcribed_before_its_key_redacted_is_redacted_for_the_model(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    # Transcribed (and stored) in clear; the key has redacted since.
    job = await _redacting_job(ipool, objects, "", call=CALL_WITH_A_CARD)
    async with ipool.acquire() as conn:
        assert await apikeys.set_redact(conn, str(job.key.id), PII)
        await categories.put(
            conn, job.key.id, "cancellation", rules.parse({"said": ["cancel"], "by": "customer"})
        )
    model = FakeModel()
    await InsightsWorker(ipool, objects, model=model).handle(delivery(job.event))

    [(_, turns, _)] = model.asked
    sent = "\n".join(t.text for t in turns)
    assert "[CREDIT_CARD]" in sent and "[PHONE]" in sent
    _clear(sent)
    everything = await _everything(ipool, objects, job)
    assert "[CREDIT_CARD]" in everything  # the category's evidence, redacted
    _clear(everything)


async def test_redaction_that_cannot_finish_keeps_nothing_of_the_call(
    ipool: asyncpg.Pool, objects: S3BlobStore
) -> None:
    job = await _redacting_job(ipool, objects, PCI, call=CALL_WITH_A_CARD)
    model = FakeModel()
    # No time at all: the detectors stop at once, as a redaction past its time does.
    worker = InsightsWorker(ipool, objects, model=model, redaction_timeout=1e-9)
    await worker.handle(delivery(job.event))
    row = await store.load(ipool, job.job.id)
    assert row is not None and (row.status, row.reason) == ("failed", "redaction_failed")
    assert model.asked == []
    assert not await categories.matches_for(ipool, job.job.id)
