"""Two-channel calls through the worker: each channel transcribed on its own (the long-audio
path), merged by time into an Agent/Customer conversation with metrics; a copied mono is not
split under `auto`; a failed channel resumes without redoing the other."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web

from libs.audio import SAMPLE_RATE, iter_pcm
from libs.bus import Retry
from libs.layout import unredacted_transcript_key
from libs.redaction import Policy
from libs.settings import Settings
from libs.transcript import Transcript
from services.transcriber.longaudio import SplitPolicy
from tests.fakes.openai_server import FakeOpenAIServer, Fault, RecordedRequest
from tests.fixtures.calls import CALL_DUP_MONO, CALL_STEREO, CALL_STEREO_8K, TIMELINE
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_long_audio import utterances

pytestmark = pytest.mark.integration


class CallFake(FakeOpenAIServer):
    """Whisper-like: one segment per stretch of speech it hears, saying the words the fixture's
    timeline put there (the clip starting nearest), timed from the upload's start."""

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        suffix = "." + (record.filename or "x.ogg").rsplit(".")[-1]
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(audio)
            f.flush()
            spans = utterances(Path(f.name))
            with closing(iter_pcm(Path(f.name))) as pcm:
                duration = sum(len(c) for c in pcm) / 2 / SAMPLE_RATE
        segments = []
        for i, (start, end) in enumerate(spans):
            words = min(TIMELINE, key=lambda t: abs(t[1] - start))[3]
            segments.append(
                {"id": i, "start": round(start, 2), "end": round(end, 2), "text": " " + words}
            )
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": " ".join(s["text"].strip() for s in segments),
            "segments": segments,
        }
        return web.json_response(body)


@pytest.fixture
async def fake() -> AsyncIterator[CallFake]:
    async with CallFake() as server:
        yield server


async def _run(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: CallFake,
    path: Path,
    **job: Any,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        made = await harness.make_job(
            pool, store, path.read_bytes(), ext=path.suffix.lstrip("."), **job
        )
        await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id) | {"id": made.id}
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        files = {
            fmt: await store.get_bytes(f"camp/transcriptions/{fmt}/{stem}.{fmt}")
            for fmt in ("json", "txt", "srt", "vtt")
        }
    return state, files


AGENT_1, CUSTOMER_1, AGENT_2, CUSTOMER_2 = (t[3] for t in TIMELINE)


@pytest.mark.parametrize("path", [CALL_STEREO, CALL_STEREO_8K], ids=["opus16k", "mulaw8k"])
async def test_a_stereo_call_becomes_an_agent_customer_conversation(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake, path: Path
) -> None:
    state, files = await _run(settings, pool, fake, path, multichannel="auto")
    assert state["status"] == "completed"
    uploads = [r for r in fake.requests if r.status == 200]
    # One per channel: each channel whole, as 16 kHz mono WAV (it fits one request).
    assert sorted((r.filename or "")[-8:] for r in uploads) == ["-ch0.wav", "-ch1.wav"]
    assert files["txt"].decode() == (
        f"Agent: {AGENT_1}\nCustomer: {CUSTOMER_1}\nAgent: {AGENT_2}\nCustomer: {CUSTOMER_2}\n"
    )
    transcript = msgspec.json.decode(files["json"], type=Transcript)
    assert [(u.channel, u.role, u.speaker) for u in transcript.utterances] == [
        (0, "agent", "Channel 0"),
        (1, "customer", "Channel 1"),
        (0, "agent", "Channel 0"),
        (1, "customer", "Channel 1"),
    ]
    # True to the original recording: each utterance starts where its clip's speech does.
    for utterance, (_, start, _, _) in zip(transcript.utterances, TIMELINE, strict=True):
        assert start <= utterance.start < start + 0.6
    vtt = files["vtt"].decode()
    assert f"<v Agent>{AGENT_1}" in vtt and f"<v Customer>{CUSTOMER_2}" in vtt
    assert f"Customer: {CUSTOMER_1}" in files["srt"].decode()
    conversation = transcript.conversation
    assert conversation is not None and conversation.method == "channels"
    agent, customer = conversation.speakers
    assert (agent.role, customer.role) == ("agent", "customer")
    # The customer's speech starts at about 10.3 s, the agent's ends at about 11.1 s.
    assert 0.5 < conversation.overlap_time < 1.1
    assert (customer.interruptions, agent.interruptions) == (1, 0)
    assert agent.words == len(f"{AGENT_1} {AGENT_2}".split())
    assert 0 < conversation.silence_ratio < 1
    assert state["metadata"]["speakers"] == "channels"
    assert state["text"] == transcript.text
    # Stored with the transcription (the status answer) and sent with TranscriptReady.
    stored = msgspec.json.decode(msgspec.json.encode(conversation))
    assert state["metadata"]["conversation"] == stored
    payload = await pool.fetchval(
        "SELECT convert_from(payload, 'UTF8')::jsonb FROM media_pipeline.outbox"
        " WHERE subject LIKE 'transcribe.transcript.ready.%'"
        " AND convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
        state["id"],
    )
    assert payload["conversation"] == stored


async def test_a_copied_mono_is_not_split_under_auto(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake
) -> None:
    state, files = await _run(settings, pool, fake, CALL_DUP_MONO, multichannel="auto")
    assert state["status"] == "completed"
    assert len(fake.requests) == 1
    transcript = msgspec.json.decode(files["json"], type=Transcript)
    assert transcript.utterances == () and transcript.conversation is None
    assert not files["txt"].startswith(b"Agent:")
    assert "conversation" not in state["metadata"]


async def test_true_splits_even_a_copied_mono_and_false_never_splits(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake
) -> None:
    _, files = await _run(settings, pool, fake, CALL_DUP_MONO, multichannel="true")
    assert len(fake.requests) == 2
    channels = {u.channel for u in msgspec.json.decode(files["json"], type=Transcript).utterances}
    assert channels == {0, 1}
    _, files = await _run(settings, pool, fake, CALL_STEREO, multichannel="false")
    assert len(fake.requests) == 3
    assert msgspec.json.decode(files["json"], type=Transcript).utterances == ()


async def test_roles_follow_the_jobs_channel_map(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake
) -> None:
    _, files = await _run(
        settings, pool, fake, CALL_STEREO, multichannel="auto", channel_roles=["customer", "agent"]
    )
    assert files["txt"].decode().splitlines()[:2] == [
        f"Customer: {AGENT_1}",
        f"Agent: {CUSTOMER_1}",
    ]
    # A map shorter than the channels: the rest are named by channel.
    _, files = await _run(
        settings, pool, fake, CALL_STEREO, multichannel="auto", channel_roles=["agent"]
    )
    assert files["txt"].decode().splitlines()[1] == f"Channel 1: {CUSTOMER_1}"


async def test_a_failed_channel_resumes_without_redoing_the_other(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        made = await harness.make_job(
            pool, store, CALL_STEREO.read_bytes(), ext="ogg", multichannel="auto"
        )
        fake.fail_next(Fault.server_error(retry_after=0))
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id)
        assert state["chunks"] == 1  # the channel that succeeded is saved
        await worker.handle(harness.delivery(made.event, attempt=2))
        state = await harness.job_state(pool, made.id)
    assert state["status"] == "completed"
    assert [r.status for r in fake.requests].count(200) == 2  # one per channel, never redone
    reused = [c["chunks_reused"] for c in state["metadata"]["channels"]]
    assert sorted(reused) == [0, 1]
    assert state["chunks"] == 0


async def test_channels_longer_than_a_chunk_go_through_the_long_audio_path(
    settings: Settings, pool: asyncpg.Pool, fake: CallFake
) -> None:
    policy = SplitPolicy(chunk_seconds=9, search_seconds=4, overlap_seconds=0.5)
    async with harness.transcriber(settings, pool, fake, split_policy=policy) as (worker, store):
        made = await harness.make_job(
            pool, store, CALL_STEREO.read_bytes(), ext="ogg", multichannel="auto"
        )
        await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id)
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        raw = await store.get_bytes(f"camp/transcriptions/json/{stem}.json")
    assert state["status"] == "completed"
    uploads = [r for r in fake.requests if r.status == 200]
    # 15.5 s in chunks of at most 9 s: two Opus chunks per channel, cut at silence.
    assert len(uploads) == 4
    assert all(r.filename and r.filename.endswith(".ogg") for r in uploads)
    assert [len(c["chunks"]) for c in state["metadata"]["channels"]] == [2, 2]
    transcript = msgspec.json.decode(raw, type=Transcript)
    # Chunk offsets are added back: every turn is where the fixture put it.
    assert [u.channel for u in transcript.utterances] == [0, 1, 0, 1]
    for utterance, (_, start, _, _) in zip(transcript.utterances, TIMELINE, strict=True):
        assert start <= utterance.start < start + 0.6


class WordCallFake(CallFake):
    """CallFake that also answers word timings when asked: each segment's words spread evenly
    over it."""

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        response = super()._success(record, audio)
        if "word" not in record.timestamp_granularities:
            return response
        assert isinstance(response.body, bytes)
        body = msgspec.json.decode(response.body)
        words = []
        for segment in body["segments"]:
            said = segment["text"].split()
            step = (segment["end"] - segment["start"]) / len(said)
            for i, word in enumerate(said):
                start = segment["start"] + i * step
                words.append({"word": word, "start": start, "end": start + step})
        return web.json_response(body | {"words": words})


async def test_utterance_words_only_when_asked_even_with_audio_redaction(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Audio redaction asks the engine for words (it needs their spans); a job that did not ask
    for word timestamps stores none, neither at the top nor in its utterances."""
    async with (
        WordCallFake() as fake,
        harness.transcriber(settings, pool, fake) as (worker, store),
    ):
        made = await harness.make_job(
            pool, store, CALL_STEREO.read_bytes(), ext="ogg", multichannel="auto"
        )
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1::uuid",
            made.id,
            Policy.parse("pci", audio="beep", keep="both").spec,
        )
        await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id)
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        raw = await store.get_bytes(f"camp/transcriptions/json/{stem}.json")
        kept = await pool.fetchval(
            "SELECT redaction->>'original_stored' FROM media_pipeline.transcriptions"
            " WHERE audio_file_id = $1::uuid",
            made.id,
        )
        assert kept == "true"
        unredacted = await store.get_bytes(unredacted_transcript_key(made.key, campaign="camp"))
    assert state["status"] == "completed"
    assert all("word" in r.timestamp_granularities for r in fake.requests)
    for stored in (raw, unredacted):
        transcript = msgspec.json.decode(stored, type=Transcript)
        assert len(transcript.utterances) == 4
        assert transcript.words is None
        assert [u.words for u in transcript.utterances] == [None] * 4


class TextOnlyCallFake(FakeOpenAIServer):
    """The gpt-4o models: text only, no timings. The words of each upload are those the
    fixture's timeline put in that channel's turn (from the chunk's file name: channel k,
    turn i), so every time in the result comes from the gateway's own cut."""

    def _text_for(self, record: RecordedRequest, audio: bytes) -> str:
        found = re.search(r"-ch(\d+)-chunk-(\d+)\.", record.filename or "")
        assert found is not None, record.filename
        channel, turn = int(found[1]), int(found[2])
        return [t[3] for t in TIMELINE if t[0] == channel][turn]


@pytest.mark.parametrize("path", [CALL_STEREO, CALL_STEREO_8K], ids=["opus16k", "mulaw8k"])
async def test_a_text_only_engine_still_yields_true_turns(
    settings: Settings, pool: asyncpg.Pool, path: Path
) -> None:
    async with TextOnlyCallFake() as fake:
        state, files = await _run(
            settings, pool, fake, path, multichannel="auto", model="gpt-4o-transcribe"
        )
    assert state["status"] == "completed"
    uploads = [r for r in fake.requests if r.status == 200]
    # Turn by turn: two turns per channel, each its own request answered with text only.
    assert len(uploads) == 4 and {r.response_format for r in uploads} == {"json"}
    transcript = msgspec.json.decode(files["json"], type=Transcript)
    assert [(u.channel, u.text) for u in transcript.utterances] == [(t[0], t[3]) for t in TIMELINE]
    for utterance, (_, start, _, _) in zip(transcript.utterances, TIMELINE, strict=True):
        assert start - 0.4 <= utterance.start < start + 0.6
        assert utterance.end - utterance.start < 4.5
    conversation = transcript.conversation
    assert conversation is not None
    agent, customer = conversation.speakers
    # The customer's second turn starts while the agent is still speaking.
    assert 0.3 < conversation.overlap_time < 1.8
    assert (customer.interruptions, agent.interruptions) == (1, 0)
    assert 0 < conversation.silence_ratio < 1
