"""The wire contract: golden samples must keep decoding, subjects must stay NATS-safe."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from libs.contracts import (
    AudioStored,
    InsightsReady,
    RedactionSummary,
    TranscriptionFailed,
    TranscriptReady,
    any_event_decoder,
    audio_stored_decoder,
    encode,
    new_event_id,
    streams,
    subjects,
    transcript_result_decoder,
    utcnow,
)

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("audio_stored_v1.json", AudioStored),
        ("audio_stored_minimal_v1.json", AudioStored),
        ("transcript_ready_v1.json", TranscriptReady),
        ("transcript_failed_v1.json", TranscriptionFailed),
        ("insights_ready_v1.json", InsightsReady),
    ],
)
def test_golden_samples_keep_decoding(name: str, cls: type) -> None:
    raw = (GOLDEN / name).read_bytes()
    event = any_event_decoder.decode(raw)
    assert isinstance(event, cls)


def test_insights_ready_carries_categories_and_insights_typed() -> None:
    event = any_event_decoder.decode((GOLDEN / "insights_ready_v1.json").read_bytes())
    assert isinstance(event, InsightsReady)
    assert event.categories[0].matches[0].role == "customer"
    assert event.insights is not None and event.insights.usage.total_tokens == 908
    assert subjects.for_event_type("insights.ready", "acme") == "transcribe.insights.ready.acme"
    assert streams.insights_consumer().filter_subjects == ("transcribe.transcript.ready.>",)


def test_unknown_fields_and_missing_defaults_are_tolerated() -> None:
    event = audio_stored_decoder.decode((GOLDEN / "audio_stored_minimal_v1.json").read_bytes())
    assert event.force is False
    assert event.timestamps == "segment"
    assert event.version == 1


def test_events_from_before_redaction_decode_as_unredacted() -> None:
    stored = audio_stored_decoder.decode((GOLDEN / "audio_stored_v1.json").read_bytes())
    assert stored.redact == ""
    ready = any_event_decoder.decode((GOLDEN / "transcript_ready_v1.json").read_bytes())
    assert isinstance(ready, TranscriptReady) and ready.redaction is None


def test_redaction_fields_round_trip() -> None:
    ready = any_event_decoder.decode((GOLDEN / "transcript_ready_v1.json").read_bytes())
    assert isinstance(ready, TranscriptReady)
    summary = RedactionSummary(policy="credit_card;substitution=entity;keep=redacted", total=2)
    summary = msgspec.structs.replace(summary, counts={"credit_card": 2})
    again = any_event_decoder.decode(encode(msgspec.structs.replace(ready, redaction=summary)))
    assert isinstance(again, TranscriptReady) and again.redaction == summary
    doc = json.loads(encode(again))
    assert doc["redaction"] == {
        "policy": "credit_card;substitution=entity;keep=redacted",
        "counts": {"credit_card": 2},
        "total": 2,
        "audio": None,
        "audio_detail": None,
    }


def test_round_trip_is_plain_json_with_type_tag() -> None:
    event = AudioStored(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id="x",
        tenant="gateway",
        campaign="c",
        storage_key="k",
        content_type="audio/wav",
        size=3,
        sha256="ab",
        force=True,
    )
    raw = encode(event)
    as_json = json.loads(raw)
    assert as_json["type"] == "audio.stored"
    assert as_json["force"] is True
    assert audio_stored_decoder.decode(raw) == event


def test_subject_decoders_refuse_the_wrong_family() -> None:
    raw = (GOLDEN / "audio_stored_v1.json").read_bytes()
    with pytest.raises(msgspec.ValidationError):
        transcript_result_decoder.decode(raw)


@pytest.mark.parametrize(
    ("prefix", "token"),
    [
        ("gateway", "gateway"),
        ("gateway/", "gateway"),
        ("", "~"),
        ("acme/east", "acme~2Feast"),
        ("a.b", "a~2Eb"),
        ("x*y>z", "x~2Ay~3Ez"),
        ("sp ace", "sp~20ace"),
    ],
)
def test_tenant_tokens_are_nats_safe(prefix: str, token: str) -> None:
    assert subjects.tenant_token(prefix) == token
    assert not any(c in token for c in ". *>\t")


def test_tenant_tokens_are_injective() -> None:
    prefixes = ["a/b", "a_b", "a~2Fb", "a.b", "a-b", "", "~"]
    tokens = [subjects.tenant_token(p) for p in prefixes]
    assert len(set(tokens)) == len(tokens)


def test_subjects_carry_the_tenant_last() -> None:
    assert subjects.audio_stored("gateway") == "transcribe.audio.stored.gateway"
    assert subjects.transcript_ready("") == "transcribe.transcript.ready.~"
    assert subjects.transcript_failed("a.b") == "transcribe.transcript.failed.a~2Eb"


def test_stream_covers_every_subject_and_keeps_history() -> None:
    spec = streams.stream_spec()
    assert spec.subjects == ("transcribe.>",)
    assert spec.max_age_seconds == 30 * 86400
    scoped = streams.transcriber_consumer("gateway")
    assert scoped.filter_subjects == ("transcribe.audio.stored.gateway",)
    assert scoped.durable != streams.transcriber_consumer().durable
