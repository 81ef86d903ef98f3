"""The status body built from the typed job view keeps the reference shape, field for field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from libs.contracts import CategoryMatch, Conversation, Evidence
from libs.jobs.progress import StoredProgress
from libs.jobs.views import JobView
from libs.redaction import RedactionRecord
from services.ingest.status import status_body

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
CONVERSATION = {
    "method": "channels",
    "duration": 10.0,
    "speakers": [
        {
            "speaker": "Channel 0",
            "role": "agent",
            "channel": 0,
            "utterances": 2,
            "words": 9,
            "talk_time": 4.5,
            "talk_ratio": 0.45,
            "words_per_minute": 120.0,
            "longest_monologue": 3.0,
            "interruptions": 0,
        }
    ],
    "talk_time": 4.5,
    "silence_time": 5.5,
    "silence_ratio": 0.55,
    "overlap_time": 0.0,
    "interruptions": 0,
    "longest_monologue": 3.0,
}


def view(**changes: Any) -> JobView:
    base: dict[str, Any] = {name: None for name in JobView.__slots__}
    base.update(
        categories=(),
        id=JOB_ID,
        status="queued",
        recording_id="rec-1",
        phone="+441632960001",
        campaign_name="spring",
        company="acme",
        tenant_prefix="acme",
        b2_object_key="acme/spring/audio/+441632960001/x.wav",
        created_at=AT,
        updated_at=AT,
        attempts=1,
    )
    base.update(changes)
    # The JSON columns as JobView.from_row reads them: into the types their writers store.
    for name, kind in (
        ("conversation", Conversation),
        ("redaction", RedactionRecord),
        ("progress", StoredProgress),
    ):
        if base[name] is not None:
            base[name] = msgspec.convert(base[name], kind)
    return JobView(**base)


def body(row: JobView) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(status_body(row)))
    return out


FACTS = {
    "audio_file_id": str(JOB_ID),
    "recording_id": "rec-1",
    "phone": "+441632960001",
    "campaign": "spring",
    "company": "acme",
    "b2_prefix": "acme",
    "b2_key": "acme/spring/audio/+441632960001/x.wav",
    "attempts": 1,
    "created_at": AT.isoformat(),
    "updated_at": AT.isoformat(),
}


def test_a_queued_job() -> None:
    assert body(view()) == {
        "status": "pending",
        "transcript": None,
        "metadata": FACTS
        | {
            "state": "queued",
            "progress": {"stage": "queued", "fraction": 0.0, "updated_at": AT.isoformat()},
        },
    }


def test_a_completed_job_with_conversation_and_redaction() -> None:
    row = view(
        status="completed",
        text="hello",
        model="whisper-1",
        engine="openai",
        language="en",
        duration_seconds=10.0,
        word_count=1,
        b2_transcript_json_key="j",
        b2_transcript_txt_key="t",
        b2_transcript_srt_key="s",
        b2_transcript_vtt_key="v",
        completed_at=AT,
        conversation=CONVERSATION,
        # As the transcriber stores it (libs.redaction.RedactionRecord): no object key.
        redaction={
            "policy": "credit_card",
            "counts": {"credit_card": 2},
            "spans": [{"cls": "credit_card", "start": 1.0, "end": 2.0}],
            "timing": "words",
            "dropped_metadata": [],
            "audio": {"status": "redacted", "mode": "beep"},
        },
        audio_expires_at=AT,
    )
    assert body(row) == {
        "status": "completed",
        "transcript": "hello",
        "metadata": FACTS
        | {
            "state": "completed",
            "audio_expires_at": AT.isoformat(),
            "progress": {"stage": "completed", "fraction": 1.0, "updated_at": AT.isoformat()},
            "model": "whisper-1",
            "engine": "openai",
            "language": "en",
            "duration": 10.0,
            "word_count": 1,
            "b2_transcript_json_key": "j",
            "b2_transcript_txt_key": "t",
            "b2_transcript_srt_key": "s",
            "b2_transcript_vtt_key": "v",
            "completed_at": AT.isoformat(),
            "conversation": CONVERSATION,
            "redaction": {
                "policy": "credit_card",
                "counts": {"credit_card": 2},
                "total": 2,
                "audio": "redacted",
                # From the job's audio key by the layout.
                "audio_key": "acme/spring/audio/+441632960001/x.redacted.wav",
            },
            # services/insights has not evaluated it yet.
            "insights": {"status": "pending"},
            "categories": [],
        },
    }


def test_a_completed_job_shows_its_insights_status_outcome_and_categories() -> None:
    matches = (
        CategoryMatch(
            name="cancel",
            matches=(Evidence(start=1.0, end=2.5, text="cancel my subscription", role="customer"),),
        ),
    )
    row = view(
        status="completed",
        text="hello",
        insights_status="completed",
        insights_outcome="retained",
        categories=matches,
    )
    meta = body(row)["metadata"]
    assert meta["insights"] == {"status": "completed", "outcome": "retained"}
    assert meta["categories"] == [
        {
            "name": "cancel",
            "matches": [
                {
                    "start": 1.0,
                    "end": 2.5,
                    "text": "cancel my subscription",
                    "role": "customer",
                    "speaker": None,
                }
            ],
        }
    ]
    failed = body(
        view(status="completed", text="x", insights_status="failed", insights_reason="refusal")
    )
    assert failed["metadata"]["insights"] == {"status": "failed", "reason": "refusal"}
    # Not completed: no insights at all.
    assert "insights" not in body(view())["metadata"]


def test_a_running_job_shows_its_stored_progress_and_a_retrying_error() -> None:
    row = view(
        status="processing",
        progress={"stage": "transcribing", "fraction": 0.5, "chunk": 1, "chunks": 2},
        progress_updated_at=AT,
        failure_status="transient",
        error_code="engine_unavailable",
        failure_error="503",
    )
    meta = body(row)["metadata"]
    assert meta["progress"] == {
        "stage": "transcribing",
        "fraction": 0.5,
        "chunk": 1,
        "chunks": 2,
        "updated_at": AT.isoformat(),
    }
    assert meta["last_error"] == {"code": "engine_unavailable", "detail": "503"}
    assert "error" not in meta


def test_a_failed_and_a_deleted_job() -> None:
    failed = body(
        view(status="failed", failure_status="permanent", error_code="bad", failure_error="x")
    )
    assert failed["status"] == "failed"
    assert failed["metadata"]["error"] == {"code": "bad", "detail": "x", "permanent": True}
    deleted = body(
        view(status="deleted", deleted_at=AT, deleted_by="retention", audio_expires_at=AT)
    )
    assert deleted["status"] == "deleted"
    meta = deleted["metadata"]
    assert meta["deleted_at"] == AT.isoformat() and meta["deleted_by"] == "retention"
    assert "progress" not in meta and "audio_expires_at" not in meta
