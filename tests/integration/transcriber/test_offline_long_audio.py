"""The offline engine on a recording longer than its window: the worker splits it at silence into
lossless chunks it decodes one at a time, and the transcript reads as if it had been heard whole
(every sentence once, words at their true times), while no request holds more than a window."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import asyncpg
import msgspec
import pytest

from libs.audio import SAMPLE_RATE
from libs.blobstore import S3BlobStore
from libs.settings import Settings
from libs.transcript import Transcript
from services.transcriber.engines import EngineOptions, Engines
from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig
from services.transcriber.worker import Transcriber
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_long_audio import long_recording

pytestmark = pytest.mark.integration

WINDOW = 20.0


class CountingEngine(FasterWhisperEngine):
    """The real engine, recording how long each request it decoded was."""

    def __init__(self) -> None:
        super().__init__(WhisperConfig(window_seconds=WINDOW))
        self.seconds: list[float] = []

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        transcript = await super().transcribe(audio, options)
        self.seconds.append(transcript.duration)
        return transcript


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]", " ", text.lower()).split()


async def test_long_recording_in_windows_reads_as_one(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # ~1 minute: the fixture sentence again and again between pauses of 1.5-4 s.
    audio, starts = long_recording(1.0, seed=7)
    engine = CountingEngine()
    async with S3BlobStore.open(settings.require_s3()) as store:
        worker = Transcriber(pool, store, Engines(default=engine, offline=engine))
        job = await harness.make_job(pool, store, audio, timestamps="word")
        await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        body = msgspec.json.decode(await store.get_bytes(f"camp/transcriptions/json/{stem}.json"))
    assert state["status"] == "completed"
    duration = (len(audio) - 44) / 2 / SAMPLE_RATE
    # Split into windows no longer than the engine's, lossless, one at a time.
    assert len(engine.seconds) >= 3
    assert max(engine.seconds) <= WINDOW + 0.01
    assert sum(engine.seconds) == pytest.approx(duration, abs=len(engine.seconds) * 1.01)
    assert body["duration"] == pytest.approx(duration, abs=0.01)

    words = body["words"]
    # Every sentence heard once: "campaign" and "morning" once per sentence, none doubled or
    # lost at a seam (tiny.en may mishear a word, never a whole sentence's worth).
    spoken = [_words(w["word"]) for w in words]
    flat = [token for tokens in spoken for token in tokens]
    assert abs(flat.count("campaign") - len(starts)) <= 1, flat
    assert abs(flat.count("morning") - len(starts)) <= 1, flat
    # Words in order, at times within the recording, each sentence's first word near the time
    # it was really said (true times across chunks, not each chunk's own).
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
    assert words[0]["start"] >= 0 and words[-1]["end"] <= duration + 0.01
    hellos = [w["start"] for w in words if _words(w["word"]) == ["hello"]]
    assert len(hellos) >= len(starts) - 1
    for start in starts:
        assert min(abs(start - h) for h in hellos) < 1.0, (start, hellos)
    # Segments keep the same order and lie within the recording too.
    segments = body["segments"]
    assert all(a["end"] <= b["start"] + 0.01 for a, b in itertools.pairwise(segments))
    assert state["chunks"] == 0  # the saved chunks are cleared once the job completes
