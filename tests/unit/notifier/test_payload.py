"""Webhook bodies: the documented contract, the transcript cap, test events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from libs.contracts import (
    Conversation,
    SpeakerMetrics,
    TranscriptionFailed,
    TranscriptKeys,
    TranscriptReady,
)
from libs.errors import DomainError
from libs.webhooks import payload
from libs.webhooks.queue import EventJob
from services.ingest.errors import answer
from services.ingest.routes.webhooks import parse_time

JOB = EventJob(
    id=uuid.uuid4(),
    api_key_id=uuid.uuid4(),
    campaign_name="spring",
    phone="+441632960001",
    callback_url=None,
    b2_object_key="spring/audio/+441632960001/a.wav",
    recording_id="rec-from-db",
    status="completed",
    text="hello world",
    key_webhook_url=None,
    webhook_disabled_at=None,
    webhook_progress=False,
)
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ready(recording_id: str | None = "rec-1") -> TranscriptReady:
    return TranscriptReady(
        event_id="e1",
        occurred_at=AT,
        audio_file_id="a1",
        tenant="acme",
        model="whisper-1",
        engine="openai",
        language="en",
        duration=3.0,
        keys=TranscriptKeys(json="spring/transcriptions/json/a.json", txt="t.txt"),
        word_count=2,
        recording_id=recording_id,
    )


def test_completed_body_carries_the_contract() -> None:
    body = msgspec.json.decode(
        payload.completed_body(ready(), JOB, "hello world", transcript_url="https://g/t.txt")
    )
    assert body["type"] == "transcription.completed"
    assert body["timestamp"] == "2026-03-01T12:00:00Z"
    d = body["data"]
    assert d["audio_file_id"] == "a1" and d["recording_id"] == "rec-1"
    assert d["status"] == "completed" and d["transcript"] == "hello world"
    assert d["transcript_truncated"] is False and d["transcript_url"] == "https://g/t.txt"
    assert d["b2_transcript_json_key"] == "spring/transcriptions/json/a.json"
    assert d["b2_audio_key"] == JOB.b2_object_key


def test_recording_id_falls_back_to_the_job() -> None:
    body = msgspec.json.decode(payload.completed_body(ready(None), JOB, "x", transcript_url="u"))
    assert body["data"]["recording_id"] == "rec-from-db"


def test_transcript_beyond_the_cap_becomes_a_link() -> None:
    text = "é" * 600  # 1200 bytes: the cap counts bytes, not characters
    at_cap = msgspec.json.decode(
        payload.completed_body(ready(), JOB, text, transcript_url="u", cap=1200)
    )
    over = msgspec.json.decode(
        payload.completed_body(ready(), JOB, text, transcript_url="u", cap=1199)
    )
    assert at_cap["data"]["transcript"] == text
    assert over["data"]["transcript"] is None and over["data"]["transcript_truncated"] is True
    assert over["data"]["transcript_url"] == "u"


def test_failed_body_carries_the_error() -> None:
    event = TranscriptionFailed(
        event_id="e2",
        occurred_at=AT,
        audio_file_id="a1",
        tenant="acme",
        error_code="engine_rejected",
        detail="bad audio",
        attempts=3,
        permanent=True,
    )
    d = msgspec.json.decode(payload.failed_body(event, JOB))["data"]
    assert d["status"] == "failed" and d["recording_id"] == "rec-from-db"
    assert d["error"] == {
        "code": "engine_rejected",
        "detail": "bad audio",
        "permanent": True,
        "attempts": 3,
    }


def test_test_event_body() -> None:
    body = msgspec.json.decode(
        payload.test_body(event_id="e3", occurred_at=AT, key_hint="tgw_abcd")
    )
    assert body["type"] == "webhook.test" and body["data"]["test"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
    ],
)
def test_parse_time(raw: str, expected: datetime) -> None:
    assert parse_time(raw, "since", required=True) == expected


@pytest.mark.parametrize("raw", ["", "yesterday", "2026-13-01"])
def test_parse_time_rejects(raw: str) -> None:
    with pytest.raises(DomainError) as info:
        parse_time(raw, "since", required=True)
    assert answer(info.value).status == 400


def test_completed_body_carries_the_conversation_when_there_is_one() -> None:
    conversation = Conversation(
        method="channels",
        duration=2.0,
        speakers=(SpeakerMetrics(speaker="Channel 0", role="agent"),),
    )
    event = msgspec.structs.replace(ready(), conversation=conversation)
    body = msgspec.json.decode(payload.completed_body(event, JOB, "x", transcript_url="u"))
    assert body["data"]["conversation"] == msgspec.json.decode(msgspec.json.encode(conversation))
    assert body["data"]["conversation"]["speakers"][0]["role"] == "agent"
    plain = msgspec.json.decode(payload.completed_body(ready(), JOB, "x", transcript_url="u"))
    assert "conversation" not in plain["data"]
