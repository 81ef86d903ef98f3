"""Webhook bodies byte for byte: receivers parse and verify what they got, so every body keeps
its keys, their order, and which keys are null or absent. Each golden file under tests/golden/
is the exact body built from the fixed inputs below (one line, as sent; the file's final newline
is not part of it). A change to a body's bytes is a change to the public contract: rewrite the
golden file on purpose (`write_goldens()`), never to make this test pass."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Union

import msgspec
import pytest

from libs.contracts import (
    ActionItem,
    CategoryMatch,
    Conversation,
    Evidence,
    Insights,
    InsightsReady,
    JobProgress,
    QuestionAnswer,
    RedactionSummary,
    RoleSentiment,
    SpeakerMetrics,
    TokenUsage,
    TranscriptionDeleted,
    TranscriptionFailed,
    TranscriptKeys,
    TranscriptReady,
)
from libs.webhooks import payload
from libs.webhooks.queue import EventJob

GOLDEN = Path(__file__).parents[2] / "golden"
AT = datetime(2026, 11, 24, 10, 0, 9, 123456, tzinfo=UTC)

JOB = EventJob(
    id=uuid.UUID("0b6f7d3e-2c1a-4e5f-9a8b-7c6d5e4f3a2b"),
    api_key_id=uuid.UUID("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
    campaign_name="spring_renewals",
    phone="+442079460018",
    callback_url=None,
    b2_object_key="spring_renewals/audio/442079460018/5d3c6a8e.mp3",
    recording_id="rec-from-db",
    status="completed",
    text="hello world",
    key_webhook_url=None,
    webhook_disabled_at=None,
    webhook_progress=True,
)
# A job with none of the optional facts: the bodies still carry their keys, as null.
BARE_JOB = EventJob(
    id=uuid.UUID("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"),
    api_key_id=uuid.UUID("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
    campaign_name=None,
    phone=None,
    callback_url=None,
    b2_object_key=None,
    recording_id=None,
    status="completed",
    text=None,
    key_webhook_url=None,
    webhook_disabled_at=None,
    webhook_progress=False,
)

CONVERSATION = Conversation(
    method="channels",
    duration=61.5,
    speakers=(
        SpeakerMetrics(
            speaker="Channel 0",
            role="agent",
            channel=0,
            utterances=7,
            words=120,
            talk_time=33.25,
            talk_ratio=0.54,
            words_per_minute=216.5,
            longest_monologue=9.5,
            interruptions=1,
        ),
        SpeakerMetrics(speaker="Channel 1", role="customer", channel=1, utterances=6, words=80),
    ),
    talk_time=58.0,
    silence_time=3.5,
    silence_ratio=0.057,
    overlap_time=1.25,
    interruptions=1,
    longest_monologue=9.5,
)
REDACTION = RedactionSummary(
    policy="pci",
    counts={"card_number": 2, "cvv": 1},
    total=3,
    audio="redacted",
)


READY = TranscriptReady(
    event_id="7a9e2c41-0d3b-4f6a-8b1c-2d3e4f5a6b7c",
    occurred_at=AT,
    trace_id="4f1c2b9d8e7a6b5c",
    audio_file_id="5d3c6a8e-1f2b-4c7d-8e9f-0a1b2c3d4e5f",
    tenant="gateway",
    model="whisper-1",
    engine="openai",
    language="en",
    duration=6.2,
    keys=TranscriptKeys(
        json="spring_renewals/transcriptions/json/5d3c6a8e.json",
        txt="spring_renewals/transcriptions/txt/5d3c6a8e.txt",
        srt="spring_renewals/transcriptions/srt/5d3c6a8e.srt",
        vtt="spring_renewals/transcriptions/vtt/5d3c6a8e.vtt",
    ),
    word_count=2,
    recording_id="1001",
)


def ready(**changes: object) -> TranscriptReady:
    return msgspec.structs.replace(READY, **changes)


def completed_plain() -> bytes:
    return payload.completed_body(
        ready(), JOB, 'hello "world" é\n', transcript_url="https://gw/v1/t/5d3c6a8e.txt"
    )


def completed_bare() -> bytes:
    """Nothing optional set: no recording id anywhere, no language, no srt/vtt, no trace."""
    event = ready(
        recording_id=None,
        language=None,
        trace_id=None,
        keys=TranscriptKeys(json="j.json", txt="t.txt"),
    )
    return payload.completed_body(event, BARE_JOB, "", transcript_url="u")


def completed_truncated() -> bytes:
    return payload.completed_body(ready(), JOB, "x" * 11, transcript_url="u", cap=10)


def completed_conversation_redaction() -> bytes:
    event = ready(conversation=CONVERSATION, redaction=REDACTION)
    return payload.completed_body(event, JOB, "my card is [CARD]", transcript_url="u")


def completed_redaction_only() -> bytes:
    redaction = RedactionSummary(
        policy="pii", counts={}, total=0, audio="not_redacted", audio_detail="too long"
    )
    return payload.completed_body(ready(redaction=redaction), JOB, "x", transcript_url="u")


def failed() -> bytes:
    event = TranscriptionFailed(
        event_id="e2",
        occurred_at=AT,
        trace_id="4f1c2b9d8e7a6b5c",
        audio_file_id="5d3c6a8e-1f2b-4c7d-8e9f-0a1b2c3d4e5f",
        tenant="gateway",
        error_code="engine_rejected",
        detail="bad audio",
        attempts=3,
        permanent=True,
        recording_id="1001",
    )
    return payload.failed_body(event, JOB)


def failed_bare() -> bytes:
    event = TranscriptionFailed(
        event_id="e2",
        occurred_at=AT,
        audio_file_id="a1",
        tenant="gateway",
        error_code="engine_unavailable",
        detail="",
        attempts=1,
        permanent=False,
    )
    return payload.failed_body(event, BARE_JOB)


def deleted() -> bytes:
    event = TranscriptionDeleted(
        event_id="e3",
        occurred_at=AT,
        trace_id="t3",
        audio_file_id="5d3c6a8e-1f2b-4c7d-8e9f-0a1b2c3d4e5f",
        tenant="gateway",
        deleted_by="key:tgw_abcd",
        reason="retention",
    )
    return payload.deleted_body(event, BARE_JOB)


def progress() -> bytes:
    event = JobProgress(
        event_id="e4",
        occurred_at=AT,
        trace_id="t4",
        audio_file_id="5d3c6a8e-1f2b-4c7d-8e9f-0a1b2c3d4e5f",
        tenant="gateway",
        stage="transcribing",
        fraction=0.5,
        chunk=3,
        chunks=6,
        channel=1,
    )
    return payload.progress_body(event, JOB)


def progress_bare() -> bytes:
    event = JobProgress(
        event_id="e4", occurred_at=AT, audio_file_id="a1", tenant="gateway", stage="queued"
    )
    return payload.progress_body(event, BARE_JOB)


def insights() -> bytes:
    event = InsightsReady(
        event_id="e5",
        occurred_at=AT,
        trace_id="t5",
        audio_file_id="5d3c6a8e-1f2b-4c7d-8e9f-0a1b2c3d4e5f",
        tenant="gateway",
        status="completed",
        recording_id="1001",
        categories=(
            CategoryMatch(
                name="cancellation",
                matches=(Evidence(start=1.5, end=3.0, text="cancel it", role="customer"),),
            ),
        ),
        insights=Insights(
            model="gpt-4o-mini",
            summary="The customer cancels.",
            outcome="cancelled",
            action_items=(ActionItem(owner="agent", text="send confirmation"),),
            sentiment=(RoleSentiment(role="customer", sentiment="negative"),),
            answers=(QuestionAnswer(question="Renewed?", answer="no", start=1.5, end=3.0),),
            usage=TokenUsage(prompt_tokens=800, completion_tokens=108, total_tokens=908),
        ),
    )
    return payload.insights_body(event, JOB)


def insights_not_configured() -> bytes:
    event = InsightsReady(
        event_id="e6",
        occurred_at=AT,
        audio_file_id="a1",
        tenant="gateway",
        status="not_configured",
        campaign="override",
    )
    return payload.insights_body(event, BARE_JOB)


def webhook_test() -> bytes:
    return payload.test_body(event_id="e7", occurred_at=AT, key_hint="tgw_abcd")


BODIES: dict[str, Callable[[], bytes]] = {
    "webhook_completed_v1.json": completed_plain,
    "webhook_completed_bare_v1.json": completed_bare,
    "webhook_completed_truncated_v1.json": completed_truncated,
    "webhook_completed_conversation_redaction_v1.json": completed_conversation_redaction,
    "webhook_completed_redaction_only_v1.json": completed_redaction_only,
    "webhook_failed_v1.json": failed,
    "webhook_failed_bare_v1.json": failed_bare,
    "webhook_deleted_v1.json": deleted,
    "webhook_progress_v1.json": progress,
    "webhook_progress_bare_v1.json": progress_bare,
    "webhook_insights_v1.json": insights,
    "webhook_insights_not_configured_v1.json": insights_not_configured,
    "webhook_test_v1.json": webhook_test,
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_webhook_body_bytes_are_unchanged(name: str) -> None:
    assert BODIES[name]() == (GOLDEN / name).read_bytes().removesuffix(b"\n")


def write_goldens() -> None:
    """Rewrite every golden body from the current code (only for a deliberate contract change)."""
    for name, build in BODIES.items():
        (GOLDEN / name).write_bytes(build() + b"\n")


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_structs_describe_every_body(name: str) -> None:
    """Each body decodes strictly as the Struct of its `type` (the schema /openapi.json shows)
    and encodes back to the same bytes."""
    raw = (GOLDEN / name).read_bytes()
    body = msgspec.json.decode(raw, type=Union[payload.WEBHOOKS], strict=True)  # noqa: UP007
    assert type(body).__struct_config__.tag == msgspec.json.decode(raw)["type"]
    assert payload.encode(body) == raw.removesuffix(b"\n")
