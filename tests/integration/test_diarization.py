"""gpt-4o-transcribe-diarize through OpenAIEngine and the worker, against the fake server that
speaks its request and response shapes (and refuses what the real API refuses)."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import openai
import pytest

from libs.blobstore import S3BlobStore
from libs.settings import Settings
from libs.transcript import Segment, Transcript
from services.transcriber.engines import Engines
from services.transcriber.engines.base import EngineOptions, OutputShape
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.longaudio import SplitPolicy
from services.transcriber.worker import Transcriber
from tests.fakes.openai_server import DIARIZE_MODEL, FakeOpenAIServer
from tests.fixtures.calls import CALL_DUP_MONO
from tests.integration.transcriber import harness

pytestmark = pytest.mark.integration

TEXT = "hello thank you for calling how can I help you today I would like to cancel my order"


def _wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\x00\x00" * int(seconds * 16_000))
    return path


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text=TEXT) as server:
        yield server


async def test_the_engine_asks_for_diarized_json_and_reads_speakers(
    fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    engine = OpenAIEngine.from_settings(fake.api_key, fake.base_url, timeout=5.0)
    try:
        transcript = await engine.transcribe(
            _wav(tmp_path / "call.wav", 45.0),
            EngineOptions(model=DIARIZE_MODEL, language=None, timestamps="word"),
        )
    finally:
        await engine.aclose()
    [request] = fake.requests
    assert request.response_format == "diarized_json"
    # Over 30 s: chunking_strategy is required; no prompt, no timestamp granularities.
    assert request.chunking_strategy == "auto"
    assert request.prompt is None and request.timestamp_granularities == []
    # The fake's turns are 8 words long, speakers alternating.
    assert [u.speaker for u in transcript.utterances] == ["Speaker A", "Speaker B", "Speaker A"]
    assert " ".join(u.text for u in transcript.utterances) == TEXT
    assert transcript.utterances[0].start == 0.0 and transcript.utterances[-1].end == 45.0
    assert transcript.words is None  # the model has no word timestamps, whatever was asked
    assert transcript.engine_metadata.speakers == "diarization"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": "names: Ann, Bob"}, "prompt"),
        (
            {
                "known_speaker_names": ["a", "b", "c", "d", "e"],
                "known_speaker_references": ["data:audio/wav;base64,AA=="] * 5,
            },
            "known_speaker_names",
        ),
        ({"known_speaker_names": ["agent"]}, "known_speaker_references"),
        ({}, "chunking_strategy"),  # 45 s without chunking_strategy
        ({"chunking_strategy": "auto", "response_format": "verbose_json"}, "response_format"),
    ],
)
async def test_the_fake_refuses_what_the_real_api_refuses(
    fake: FakeOpenAIServer, tmp_path: Path, extra: dict[str, Any], param: str
) -> None:
    client = build_client(fake.api_key, fake.base_url, 5.0)
    kwargs: dict[str, Any] = {"response_format": "diarized_json"} | extra
    try:
        with (
            _wav(tmp_path / "call.wav", 45.0).open("rb") as fh,
            pytest.raises(openai.BadRequestError) as caught,
        ):
            await client.audio.transcriptions.create(
                file=("call.wav", fh, "audio/wav"), model=DIARIZE_MODEL, **kwargs
            )
    finally:
        await client.close()
    assert isinstance(caught.value.body, dict) and caught.value.body.get("param") == param


async def test_under_30_seconds_needs_no_chunking_strategy(
    fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    client = build_client(fake.api_key, fake.base_url, 5.0)
    try:
        with _wav(tmp_path / "call.wav", 20.0).open("rb") as fh:
            answer = await client.audio.transcriptions.create(
                file=("call.wav", fh, "audio/wav"),
                model=DIARIZE_MODEL,
                response_format="diarized_json",
            )
    finally:
        await client.close()
    assert {s.speaker for s in answer.segments} == {"A", "B"}


async def test_a_mono_call_comes_back_with_speaker_labels_and_metrics(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        made = await harness.make_job(
            pool,
            store,
            CALL_DUP_MONO.read_bytes(),
            ext="ogg",
            model=DIARIZE_MODEL,
            multichannel="auto",  # a copied mono: not split, so the engine diarizes
        )
        await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id)
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        txt = (await store.get_bytes(f"camp/transcriptions/txt/{stem}.txt")).decode()
        raw = await store.get_bytes(f"camp/transcriptions/json/{stem}.json")
    assert state["status"] == "completed"
    assert len(fake.requests) == 1
    labels = [line.split(":", 1)[0] for line in txt.splitlines()]
    assert labels == ["Speaker A", "Speaker B", "Speaker A"]
    transcript = msgspec.json.decode(raw, type=Transcript)
    assert transcript.conversation is not None
    assert transcript.conversation.method == "diarization"
    assert [s.speaker for s in transcript.conversation.speakers] == ["Speaker A", "Speaker B"]
    assert state["metadata"]["conversation"]["method"] == "diarization"
    assert state["metadata"]["speakers"] == "diarization"


async def test_chunks_of_a_long_recording_label_their_speakers_per_part(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    audio = _wav(tmp_path / "long.wav", 150.0).read_bytes()
    limits = msgspec.structs.replace(LIMITS, max_seconds=60.0)
    policy = SplitPolicy(chunk_seconds=60, search_seconds=20, overlap_seconds=1.0)
    async with harness.transcriber(settings, pool, fake, limits=limits, split_policy=policy) as (
        worker,
        store,
    ):
        made = await harness.make_job(pool, store, audio, model=DIARIZE_MODEL)
        await worker.handle(harness.delivery(made.event))
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        raw = await store.get_bytes(f"camp/transcriptions/json/{stem}.json")
    transcript = msgspec.json.decode(raw, type=Transcript)
    assert len(fake.requests) == 3
    # A request's "A" need not be the next request's "A": each part says which it is.
    speakers = [u.speaker for u in transcript.utterances]
    assert speakers[:2] == ["Speaker A (part 1)", "Speaker B (part 1)"]
    assert "Speaker A (part 3)" in speakers
    starts = [u.start for u in transcript.utterances]
    assert starts == sorted(starts)
    # Timed in the recording: the third part starts where its chunk does (a cut at ~100 s).
    third = [u.start for u in transcript.utterances if u.speaker.endswith("(part 3)")]
    assert min(third) >= 80


class NoSpeakersEngine:
    """An honest in-memory engine that, like the offline engines, cannot tell voices apart."""

    name = "local"
    limits = None
    default_model = "local"

    def output_shape(self, model: str, timestamps: str) -> OutputShape:
        return OutputShape(response_format=None, segment_timings=True, word_timings=False)

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        return Transcript(
            text="hello there",
            language="en",
            duration=1.0,
            segments=(Segment(id=0, start=0.0, end=1.0, text="hello there"),),
            model=self.default_model,
            engine=self.name,
        )

    async def check_credentials(self) -> bool:
        return True


async def test_an_engine_that_cannot_diarize_says_so(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    engine = NoSpeakersEngine()
    async with S3BlobStore.open(settings.require_s3()) as store:
        worker = Transcriber(pool, store, Engines(default=engine, offline=engine))
        made = await harness.make_job(
            pool, store, CALL_DUP_MONO.read_bytes(), ext="ogg", model=DIARIZE_MODEL
        )
        await worker.handle(harness.delivery(made.event))
    state = await harness.job_state(pool, made.id)
    assert state["status"] == "completed"
    assert state["metadata"]["speakers"] == "none"
    assert state["metadata"]["speakers_detail"] == "the local engine does not diarize"
    assert "conversation" not in state["metadata"]
