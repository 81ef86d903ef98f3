"""A 30-minute recording over the engine's limits: split at silence, transcribed chunk by chunk,
reassembled with the right timestamps and nothing said twice at the seams, and resumed without
redoing finished chunks after a chunk fails."""

from __future__ import annotations

import io
import itertools
import tempfile
import wave
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest
from aiohttp import web

from libs.audio import SAMPLE_RATE, iter_pcm
from libs.audio.split import FRAME_SECONDS, frame_energies
from libs.bus import Retry
from libs.settings import Settings
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.longaudio import SplitPolicy
from tests.fakes.openai_server import FakeOpenAIServer, Fault, RecordedRequest
from tests.integration.transcriber import harness

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav"
SENTENCE = "hello this is a test called about your campaign please call me back tomorrow morning"
# Speech frames louder than this (mean square, about -40 dBFS) count as speech; pauses inside
# the sentence shorter than _JOIN seconds do not end it.
_LOUD = (32768 * 10 ** (-40 / 20)) ** 2
_JOIN = 1.0


def utterances(path: Path) -> list[tuple[float, float]]:
    """(start, end) in seconds of every stretch of speech in the file."""
    energies, _ = frame_energies(path)
    loud = np.flatnonzero(energies > _LOUD)
    spans: list[tuple[float, float]] = []
    for frame in loud:
        start, end = frame * FRAME_SECONDS, (frame + 1) * FRAME_SECONDS
        if spans and start - spans[-1][1] < _JOIN:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


class ListeningFake(FakeOpenAIServer):
    """Answers with one segment per utterance it actually hears in the uploaded chunk, timed
    from the chunk's start, as Whisper would: the test then knows the truth for every seam."""

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        with tempfile.NamedTemporaryFile(
            suffix="." + (record.filename or "x.ogg").rsplit(".")[-1]
        ) as f:
            f.write(audio)
            f.flush()
            spans = utterances(Path(f.name))
            with closing(iter_pcm(Path(f.name))) as pcm:
                duration = sum(len(c) for c in pcm) / 2 / SAMPLE_RATE
        segments = [
            {"id": i, "start": round(s, 2), "end": round(e, 2), "text": " " + SENTENCE}
            for i, (s, e) in enumerate(spans)
        ]
        text = " ".join(SENTENCE for _ in spans)
        if record.response_format == "json":
            return web.json_response({"text": text})
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": segments,
        }
        return web.json_response(body)


def long_recording(minutes: float, seed: int = 4) -> tuple[bytes, list[float]]:
    """The fixture sentence again and again, between silences of 1.5-4 s; returns the WAV and
    the true start of every sentence's speech."""
    with closing(iter_pcm(FIXTURE)) as pcm:
        speech = b"".join(pcm)
    onset = utterances(FIXTURE)[0][0]
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    starts: list[float] = []
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        at = 0
        while at < minutes * 60 * SAMPLE_RATE:
            gap = int(rng.uniform(1.5, 4.0) * SAMPLE_RATE)
            w.writeframes(b"\0\0" * gap)
            starts.append((at + gap) / SAMPLE_RATE + onset)
            w.writeframes(speech)
            at += gap + len(speech) // 2
    return out.getvalue(), starts


@pytest.fixture(scope="module")
def thirty_minutes() -> tuple[bytes, list[float]]:
    return long_recording(30)


@pytest.fixture
async def fake() -> AsyncIterator[ListeningFake]:
    async with ListeningFake() as server:
        yield server


POLICY = SplitPolicy(chunk_seconds=300, search_seconds=60, overlap_seconds=1.0, chunk_concurrency=3)


async def test_thirty_minutes_are_split_and_reassembled_exactly(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: ListeningFake,
    thirty_minutes: tuple[bytes, list[float]],
) -> None:
    audio, starts = thirty_minutes
    async with harness.transcriber(settings, pool, fake, split_policy=POLICY) as (worker, store):
        job = await harness.make_job(pool, store, audio)
        await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
    assert state["status"] == "completed"
    chunks = state["metadata"]
    uploads = [r for r in fake.requests if r.status == 200]
    # 30 minutes in chunks of at most 5: at least six, every one a small Ogg/Opus file.
    assert len(uploads) >= 6
    assert all(r.filename and r.filename.endswith(".ogg") for r in uploads)
    assert max(r.file_size for r in uploads) < 2 * 1024 * 1024
    row = await pool.fetchrow(
        "SELECT text, duration_seconds, metadata FROM media_pipeline.transcriptions"
        " WHERE audio_file_id = $1::uuid",
        job.id,
    )
    assert row is not None and chunks is not None
    async with harness.transcriber(settings, pool, fake) as (_, store):
        stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        body = msgspec.json.decode(await store.get_bytes(f"camp/transcriptions/json/{stem}.json"))
    segments = body["segments"]
    # Every sentence exactly once: none lost at a cut, none doubled by an overlap.
    assert len(segments) == len(starts)
    assert row["text"].split() == " ".join(SENTENCE for _ in starts).split()
    # Each at its true time in the recording (100 ms frames + Opus's few ms of delay).
    errors = [abs(s["start"] - t) for s, t in zip(segments, starts, strict=True)]
    assert max(errors) < 0.15, max(errors)
    assert abs(row["duration_seconds"] - len(audio[44:]) / 2 / SAMPLE_RATE) < 0.01
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(segments))
    assert state["chunks"] == 0  # saved chunks are cleared once the job completes


async def test_a_failed_chunk_is_retried_without_redoing_finished_ones(
    settings: Settings, pool: asyncpg.Pool, fake: ListeningFake
) -> None:
    audio, starts = long_recording(12, seed=7)
    # 12 minutes is under OpenAI's limits; a 5-minute limit makes it three chunks.
    limits = msgspec.structs.replace(LIMITS, max_seconds=300.0)
    async with harness.transcriber(settings, pool, fake, split_policy=POLICY, limits=limits) as (
        worker,
        store,
    ):
        job = await harness.make_job(pool, store, audio)
        fake.fail_next(Fault.server_error(retry_after=0))
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        saved = state["chunks"]
        assert saved >= 1
        first_attempt = len(fake.requests)
        # The redelivery (this process or another: the chunks are in Postgres).
        await worker.handle(harness.delivery(job.event, attempt=2))
        state = await harness.job_state(pool, job.id)
    assert state["status"] == "completed"
    chunks = len(state["metadata"]["chunks"])
    assert chunks == 3
    assert state["metadata"]["chunks_reused"] == saved
    assert len(fake.requests) - first_attempt == chunks - saved
    assert state["text"].split() == " ".join(SENTENCE for _ in starts).split()
