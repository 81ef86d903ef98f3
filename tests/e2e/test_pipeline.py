"""The first real job, end to end, on real nats-server, Postgres and SeaweedFS: submit a festival
recording, transcribe it offline, store every format, deliver a signed webhook."""

from __future__ import annotations

import json
import re

import aiohttp
import nats
import pytest

from libs.blobstore import S3BlobStore
from libs.contracts import any_event_decoder, streams, subjects
from tests.stack_fixtures import API_KEY, RunningStack, WebhookInbox

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SENTENCE = "hello this is a test call about your campaign please call me back tomorrow morning"
HEADERS = {"X-API-Key": API_KEY}


def _word_recall(expected: str, got: str) -> float:
    want = expected.split()
    have = re.sub(r"[^a-z ]", " ", got.lower()).split()
    return sum(1 for w in want if w in have) / len(want)


async def _submit(stack: RunningStack, data: dict[str, str]) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(stack.base_url + "/api/media/transcribe", data=data, headers=HEADERS) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return dict(body)


async def _status(stack: RunningStack, audio_file_id: str) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{stack.base_url}/api/media/status/{audio_file_id}", headers=HEADERS) as r,
    ):
        assert r.status == 200
        return dict(await r.json())


async def test_url_submission_runs_the_whole_pipeline(
    running_stack: RunningStack, webhook_inbox: WebhookInbox, samples_url: str
) -> None:
    # Ogg/Opus, not the WAV the demo recording points at: a different URL is a different job.
    accepted = await _submit(
        running_stack, {"url": f"{samples_url}/hello_campaign.opus", "b2_prefix": "gateway"}
    )
    assert accepted["status"] == "QUEUED"
    audio_file_id = accepted["audio_file_id"]
    assert accepted["b2_key"] == f"gateway/unassigned/audio/unknown/{audio_file_id}.opus"

    deliveries = await webhook_inbox.wait_for(audio_file_id, timeout=180)
    payload = deliveries[0]["payload"]
    assert payload["type"] == "transcription.completed"
    assert _word_recall(SENTENCE, payload["data"]["transcript"]) >= 0.7

    status = await _status(running_stack, audio_file_id)
    assert status["status"] == "completed"
    assert isinstance(status["transcript"], str)
    assert _word_recall(SENTENCE, status["transcript"]) >= 0.7
    metadata = status["metadata"]
    assert isinstance(metadata, dict)
    assert (
        metadata["b2_transcript_json_key"]
        == f"unassigned/transcriptions/json/unknown/{audio_file_id}.json"
    )
    assert (
        metadata["b2_transcript_txt_key"]
        == f"unassigned/transcriptions/txt/unknown/{audio_file_id}.txt"
    )

    async with S3BlobStore.open(running_stack.settings.require_s3()) as store:
        txt = (await store.get_bytes(metadata["b2_transcript_txt_key"])).decode()
        assert txt.strip() == status["transcript"]
        doc = json.loads(await store.get_bytes(metadata["b2_transcript_json_key"]))
        assert doc["segments"]
        assert (await store.get_bytes(str(metadata["b2_transcript_srt_key"]))).startswith(b"1\n")
        assert (await store.get_bytes(str(metadata["b2_transcript_vtt_key"]))).startswith(b"WEBVTT")
        assert await store.exists(accepted["b2_key"])


async def test_recording_id_submission_uses_the_database_as_truth(
    running_stack: RunningStack, webhook_inbox: WebhookInbox
) -> None:
    # The reference client's curl line: recording_id + b2_prefix, form-urlencoded.
    accepted = await _submit(
        running_stack, {"recording_id": "1001", "b2_prefix": "gateway", "phone": "+15550000000"}
    )
    audio_file_id = accepted["audio_file_id"]
    # Phone and campaign come from public.contacts / public.campaign_map, not from the form.
    assert accepted["b2_key"] == f"gateway/spring_renewals/audio/442079460018/{audio_file_id}.wav"
    await webhook_inbox.wait_for(audio_file_id, timeout=180)
    status = await _status(running_stack, audio_file_id)
    assert status["status"] == "completed"
    assert status["metadata"]["recording_id"] == "1001"  # type: ignore[index]

    # Submitting the same recording again returns the same job without a second download.
    again = await _submit(running_stack, {"recording_id": "1001", "b2_prefix": "gateway"})
    assert again["audio_file_id"] == audio_file_id


async def test_events_on_the_stream_are_plain_json(
    running_stack: RunningStack, webhook_inbox: WebhookInbox
) -> None:
    """What `nats stream view TRANSCRIBE` shows an operator: readable JSON with a type tag."""
    accepted = await _submit(running_stack, {"recording_id": "rec-7f3a"})
    await webhook_inbox.wait_for(accepted["audio_file_id"], timeout=180)
    nc = await nats.connect(running_stack.settings.nats_servers)
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.STREAM_NAME)
        seen_types = set()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(streams.STREAM_NAME, seq)
            doc = json.loads(msg.data)  # plain JSON, no framing
            if doc.get("audio_file_id") != accepted["audio_file_id"]:
                continue  # other tests' events, and replayed copies (new Nats-Msg-Id by design)
            assert doc["event_id"] == msg.headers["Nats-Msg-Id"]  # type: ignore[index]
            assert any_event_decoder.decode(msg.data)
            seen_types.add(doc["type"])
            # The subject is derived from the event, so operators can filter on type and tenant.
            assert msg.subject == subjects.for_event_type(doc["type"], doc["tenant"])
        assert {"audio.stored", "transcript.ready"} <= seen_types
    finally:
        await nc.close()


async def test_url_equal_to_a_recording_location_takes_the_recordings_data(
    running_stack: RunningStack, samples_url: str
) -> None:
    """Reference: `url` is the exact `public.recordings.location`; the DB stays the source of truth."""
    location = f"{samples_url}/calls/2026/rec-7f3a/hello_campaign.wav"
    accepted = await _submit(
        running_stack, {"url": location, "campaign": "ignored", "phone": "+15550000000"}
    )
    audio_file_id = accepted["audio_file_id"]
    assert accepted["b2_key"] == f"winback/audio/14155550132/{audio_file_id}.wav"
    status = await _status(running_stack, audio_file_id)
    assert status["metadata"]["recording_id"] == "rec-7f3a"  # type: ignore[index]
