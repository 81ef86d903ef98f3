"""The worker needs nothing from an engine beyond the `Engine` protocol.

The long-audio path once read the OpenAI engine's `default_model` with getattr and imported its
`response_format_for`; here an engine implementing only the protocol drives that path, without
servers (a fake pool records the saved chunks and answers the tombstone read, a fake store
serves the fixture).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from libs.audio import SAMPLE_RATE
from libs.contracts import AudioStored
from libs.contracts.events import new_event_id, utcnow
from libs.jobs import lifecycle
from libs.jobs.lifecycle import ProcessingJob as Job
from libs.transcript import Segment, Transcript
from services.transcriber.engines import (
    Engine,
    EngineOptions,
    Engines,
    OutputShape,
    Timestamps,
    UploadLimits,
)
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.engines.openai.models import DEFAULT_MODEL, output_shape
from services.transcriber.engines.whisper import PACKAGED_MODEL_NAME, FasterWhisperEngine
from services.transcriber.longaudio import SplitPolicy
from services.transcriber.worker import Transcriber

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav"
# 6.4 s of speech in chunks of at most 2.5 s + overlap, cut in the quietest of their last second.
POLICY = SplitPolicy(chunk_seconds=2.5, search_seconds=1.0, overlap_seconds=0.2)


class ProtocolOnlyEngine:
    """Implements `Engine`, and nothing more: no attribute a worker could reach around it."""

    name = "protocol-only"
    # Takes no WAV, so every job goes through the long-audio path.
    limits: UploadLimits | None = UploadLimits(
        max_bytes=1 << 30, max_seconds=3600.0, extensions=frozenset({"flac"})
    )

    def __init__(self, *, timed: bool) -> None:
        self._timed = timed
        self.shapes: list[tuple[str, Timestamps]] = []
        self.calls: list[EngineOptions] = []

    @property
    def default_model(self) -> str:
        return "fake-default"

    def output_shape(self, model: str, timestamps: Timestamps) -> OutputShape:
        self.shapes.append((model, timestamps))
        return OutputShape(response_format=None, segment_timings=self._timed, word_timings=False)

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        self.calls.append(options)
        text = "part" + audio.stem.rsplit("-", 1)[-1]  # the worker names chunk files "-chunk-<i>"
        return Transcript(
            text=text,
            language="en",
            duration=1.0,
            segments=(Segment(id=0, start=0.25, end=0.75, text=text),),
            model=options.model or self.default_model,
            engine=self.name,
        )

    async def check_credentials(self) -> bool:
        return True


class RecordingPool:
    """The statements long audio runs: no chunks saved yet, each chunk saved, and the job's
    progress reported (libs/jobs/progress: one statement answering rows written)."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, ...]] = []
        self.progress: list[tuple[Any, ...]] = []

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return []

    async def execute(self, query: str, *args: Any) -> str:
        self.saved.append(args)
        return "INSERT 0 1"

    async def fetchval(self, query: str, *args: Any) -> int:
        if query == lifecycle.IS_DELETED:
            return False  # the tombstone, read before each chunk: the job is not deleted
        self.progress.append(args)
        return 2


class FixtureStore:
    async def download_to(self, key: str, path: Path) -> int:
        shutil.copyfile(FIXTURE, path)
        return path.stat().st_size


def _job_and_event(model: str | None) -> tuple[Job, AudioStored]:
    job_id = uuid.uuid4()
    key = f"gateway/spring/audio/15550001111/{job_id}.wav"
    job = Job(
        id=job_id,
        tenant_prefix="gateway",
        campaign_name="spring",
        recording_id=None,
        object_key=key,
        status="processing",
        has_transcript=False,
        failure_status=None,
        trace_id=None,
    )
    event = AudioStored(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=str(job_id),
        tenant="gateway",
        campaign="spring",
        storage_key=key,
        content_type="audio/wav",
        size=FIXTURE.stat().st_size,
        sha256="0" * 64,
        model=model,
    )
    return job, event


async def _transcribe(
    engine: ProtocolOnlyEngine, model: str | None, tmp_path: Path
) -> tuple[Transcript, RecordingPool]:
    # mypy checks the real engines against `Engine` (engines/whisper.py, openai/engine.py);
    # tests are not type-checked, so this one is checked by behaving as the worker expects.
    _: Engine = engine
    pool = RecordingPool()
    transcriber = Transcriber(
        pool,  # type: ignore[arg-type]
        FixtureStore(),  # type: ignore[arg-type]
        Engines(default=engine, offline=engine),
        work_dir=tmp_path,
        split_policy=POLICY,
    )
    job, event = _job_and_event(model)
    transcript = await transcriber._transcribe(job, event)
    return transcript, pool


@pytest.mark.parametrize("timed", [True, False])
async def test_long_audio_asks_the_protocol_for_model_and_timings(
    tmp_path: Path, timed: bool
) -> None:
    engine = ProtocolOnlyEngine(timed=timed)
    transcript, pool = await _transcribe(engine, None, tmp_path)

    chunks = sorted(pool.saved, key=lambda args: args[1])  # (job, index, start, end, key, ...)
    assert len(chunks) == len(engine.calls) >= 3
    # No model on the job: the engine's default names the request, so saved chunks are only
    # reused by a later attempt with the same model.
    assert engine.shapes == [("fake-default", "segment")]
    assert {args[4] for args in chunks} == {"fake-default|segment|"}
    assert transcript.text == " ".join(f"part{i}" for i in range(len(chunks)))
    # Progress: chunk 0 of n once planned, then each chunk, the last one "rendering".
    reported = [(args[1]["stage"], args[1]["chunk"]) for args in pool.progress]
    n = len(chunks)
    assert reported[0] == ("transcribing", 0) and reported[-1] == ("rendering", n)
    assert sorted(chunk for _, chunk in reported) == list(range(n + 1))
    offsets = [args[2] / SAMPLE_RATE for args in chunks]
    if timed:
        # The engine's own timings, moved to each chunk's position in the recording.
        expected = [(offset + 0.25, offset + 0.75) for offset in offsets]
    else:
        # No timings to trust: one segment per chunk, spanning it up to the next cut.
        expected = list(zip(offsets, [*offsets[1:], transcript.duration], strict=True))
    got = [value for s in transcript.segments for value in (s.start, s.end)]
    assert got == pytest.approx([value for pair in expected for value in pair], abs=1e-3)


async def test_a_model_on_the_job_wins_over_the_default(tmp_path: Path) -> None:
    engine = ProtocolOnlyEngine(timed=True)
    _, pool = await _transcribe(engine, "whisper-large", tmp_path)
    assert engine.shapes == [("whisper-large", "segment")]
    assert {args[4] for args in pool.saved} == {"whisper-large|segment|"}
    assert {options.model for options in engine.calls} == {"whisper-large"}


@pytest.mark.parametrize(
    ("model", "timestamps", "shape"),
    [
        ("whisper-1", "segment", OutputShape(response_format="verbose_json", segment_timings=True, word_timings=False)),
        ("whisper-1", "word", OutputShape(response_format="verbose_json", segment_timings=True, word_timings=True)),
        ("whisper-1", "none", OutputShape(response_format="verbose_json", segment_timings=True, word_timings=False)),
        ("gpt-4o-transcribe", "word", OutputShape(response_format="json", segment_timings=False, word_timings=False)),
        ("gpt-4o-mini-transcribe", "segment", OutputShape(response_format="json", segment_timings=False, word_timings=False)),
        ("Systran/faster-whisper-small", "word", OutputShape(response_format="verbose_json", segment_timings=True, word_timings=True)),
    ],
)  # fmt: skip
def test_openai_output_shapes(model: str, timestamps: Timestamps, shape: OutputShape) -> None:
    assert output_shape(model, timestamps) == shape


@pytest.mark.parametrize(
    ("timestamps", "segments", "words"),
    [("none", False, False), ("segment", True, False), ("word", True, True)],
)
def test_offline_output_shape(timestamps: Timestamps, segments: bool, words: bool) -> None:
    engine = FasterWhisperEngine()  # loads no model until the first job
    assert engine.default_model == PACKAGED_MODEL_NAME
    assert engine.output_shape("whisper-1", timestamps) == OutputShape(
        response_format=None, segment_timings=segments, word_timings=words
    )


async def test_openai_engine_answers_from_its_model_table() -> None:
    engine = OpenAIEngine(build_client("sk-unused", "http://127.0.0.1:9/v1"))
    try:
        assert engine.default_model == DEFAULT_MODEL
        for model in ("whisper-1", "gpt-4o-transcribe"):
            assert engine.output_shape(model, "word") == output_shape(model, "word")
    finally:
        await engine.aclose()
