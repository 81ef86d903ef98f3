"""Completing a job (libs.jobs.lifecycle.complete): the transcription row is written from the
named fields of a CompletedTranscription, each landing in its column, in the one statement
that also announces the job."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from libs.contracts import RedactionSummary, TranscriptKeys, TranscriptReady
from libs.jobs import lifecycle
from libs.transcript import EngineMetadata, Transcript
from tests.integration.ingest.conftest import Api, Upstream, make_key

pytestmark = pytest.mark.integration


async def test_every_field_is_a_column_of_transcriptions(api: Api) -> None:
    columns = {
        r["column_name"]
        for r in await api.pool.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'media_pipeline' AND table_name = 'transcriptions'"
        )
    }
    assert set(lifecycle.CompletedTranscription.__struct_fields__) <= columns


async def test_complete_writes_each_field_to_its_column(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "phone": "+14155550100"}, key=raw)
    assert status == 200, body
    job = await lifecycle.load_job(api.pool, str(body["audio_file_id"]))
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    transcript = Transcript(
        text="it's 'quoted' \\ and \"escaped\" é",
        language=None,
        duration=2.25,
        model="whisper-1",
        engine="openai",
        engine_metadata=EngineMetadata(raw_response={"text": "x", "n": 1}),
    )
    keys = TranscriptKeys(json="k.json", txt="k.txt")  # no srt, no vtt
    record = {"policy": "credit_card", "counts": {"credit_card": 1}, "spans": [[0.5, 1.0]]}
    summary = RedactionSummary(policy="credit_card", counts={"credit_card": 1})

    ready = await lifecycle.complete(
        api.pool,
        job,
        transcript,
        keys,
        force=False,
        trace_id="t-1",
        redaction=record,
        summary=summary,
    )
    assert isinstance(ready, TranscriptReady)
    row = await api.pool.fetchrow(
        "SELECT * FROM media_pipeline.transcriptions WHERE audio_file_id = $1", job.id
    )
    assert row["status"] == "completed"
    assert (row["model"], row["engine"], row["language"]) == ("whisper-1", "openai", None)
    assert row["duration_seconds"] == 2.25 and row["word_count"] == transcript.word_count
    assert row["text"] == transcript.text
    assert (row["b2_transcript_json_key"], row["b2_transcript_txt_key"]) == ("k.json", "k.txt")
    assert row["b2_transcript_srt_key"] is None and row["b2_transcript_vtt_key"] is None
    assert row["raw_response"] == {"text": "x", "n": 1}
    assert row["metadata"] == {"segments": 0, "has_words": False}
    assert row["redaction"] == record
    event = await api.pool.fetchval(
        "SELECT payload FROM media_pipeline.outbox WHERE event_id = $1", ready.event_id
    )
    assert msgspec.json.decode(event, type=TranscriptReady) == ready

    # Completed already: a second completion (a redelivery) writes and announces nothing ...
    again = await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)
    assert again is None
    # ... unless forced (a rerun): then the row is replaced, NULLs included.
    plain = msgspec.structs.replace(transcript, engine_metadata=EngineMetadata(), language="en")
    forced = await lifecycle.complete(
        api.pool, job, plain, keys, force=True, trace_id=None, store_raw_response=False
    )
    assert forced is not None
    row = await api.pool.fetchrow(
        "SELECT language, raw_response, redaction FROM media_pipeline.transcriptions "
        "WHERE audio_file_id = $1",
        job.id,
    )
    assert (row["language"], row["raw_response"], row["redaction"]) == ("en", None, None)
