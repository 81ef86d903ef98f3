"""Pure parts of replay and dead letters: what a replayed copy looks like, advisory parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from libs.contracts import AudioStored, TranscriptKeys, TranscriptReady, encode, subjects
from libs.replay import StoredEvent
from libs.replay.operations import job_filter, replay_copy
from services.deadletters.advisory import advisory_decoder, kind_of

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _stored(event: AudioStored | TranscriptReady, subject: str) -> StoredEvent:
    return StoredEvent(seq=7, subject=subject, time=NOW, data=encode(event), headers={})


def _audio(force: bool = False) -> AudioStored:
    return AudioStored(
        event_id="e-1", occurred_at=NOW, trace_id="t-1", audio_file_id="a-1", tenant="gateway",
        campaign="c", storage_key="k", content_type="audio/wav", size=1, sha256="0" * 64,
        force=force,
    )  # fmt: skip


def test_a_replayed_audio_stored_is_a_new_event_with_a_new_msg_id() -> None:
    data, msg_id = replay_copy(_stored(_audio(), subjects.audio_stored("gateway")))
    copy = json.loads(data)
    assert copy["event_id"] == msg_id != "e-1"
    assert copy["force"] is False
    assert copy["audio_file_id"] == "a-1" and copy["trace_id"] == "t-1"
    forced, forced_id = replay_copy(_stored(_audio(), "s"), force=True)
    assert json.loads(forced)["force"] is True and forced_id not in (msg_id, "e-1")
    # A forced original stays forced.
    assert json.loads(replay_copy(_stored(_audio(force=True), "s"))[0])["force"] is True


def test_a_replayed_result_keeps_its_bytes_and_event_id() -> None:
    ready = TranscriptReady(
        event_id="r-1", occurred_at=NOW, audio_file_id="a-1", tenant="", model="m", engine="e",
        language=None, duration=1.0, keys=TranscriptKeys(json="j", txt="t"), word_count=1,
    )  # fmt: skip
    stored = _stored(ready, subjects.transcript_ready(""))
    data, msg_id = replay_copy(stored)
    assert data == stored.data
    assert msg_id.startswith("replay-") and "r-1" not in msg_id
    with pytest.raises(ValueError, match="AudioStored only"):
        replay_copy(stored, force=True)


def test_job_filter_uses_the_tenant_token() -> None:
    assert job_filter("gateway") == "transcribe.*.*.gateway"
    assert job_filter("") == "transcribe.*.*.~"
    assert job_filter("a/b") == "transcribe.*.*.a~2Fb"
    assert job_filter(None) == "transcribe.*.*.*"


def test_advisories() -> None:
    assert kind_of("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.TRANSCRIBE.transcriber") == (
        "max_deliveries"
    )
    assert kind_of("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.TRANSCRIBE.notifier") == (
        "terminated"
    )
    assert kind_of("transcribe.audio.stored.x") is None
    adv = advisory_decoder.decode(
        b'{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x",'
        b'"timestamp":"2026-11-24T12:00:00.123456789Z","stream":"TRANSCRIBE",'
        b'"consumer":"transcriber","stream_seq":42,"deliveries":10,"extra":1}'
    )
    assert (adv.stream_seq, adv.deliveries, adv.consumer) == (42, 10, "transcriber")


def test_gauges_drop_consumers_that_are_gone() -> None:
    from prometheus_client import REGISTRY

    from libs.observability.collector import ConsumerView, OpsSnapshot, publish

    def view(name: str) -> ConsumerView:
        return ConsumerView("S", name, 1, 0, 0, 0, 0, 0)

    publish(OpsSnapshot(consumers=[view("gone-soon"), view("stays")]))
    labels = {"stream": "S", "consumer": "gone-soon"}
    assert REGISTRY.get_sample_value("transcribe_consumer_pending", labels) == 1
    publish(OpsSnapshot(consumers=[view("stays")]))
    assert REGISTRY.get_sample_value("transcribe_consumer_pending", labels) is None
