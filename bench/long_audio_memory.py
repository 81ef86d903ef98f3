"""Memory of one long-audio job as a function of its number of chunks (issue 24, item 5).

    python -m bench.long_audio_memory [--chunks 2000] [--chunk-seconds 2]

Runs `LongAudio.transcribe` in this process on a generated 8 kHz WAV cut into `--chunks`
chunks of `--chunk-seconds`, with a fast fake engine (a few timed words per chunk, answered at
once) and honest in-memory chunk storage, so 2,000 chunks cost about a minute. RSS is sampled
after every chunk; the report gives RSS before, at 10% / 50% / 100% of the chunks, the peak, and
after the job (the transcript dropped), and the growth per 1,000 chunks between 10% and 100%:
what the job holds per chunk beyond its transcript (which is the result, and kept).
Results: bench/results/long_audio_memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil

from bench.report import write_results
from libs.jobs.lifecycle import StoredChunk
from libs.transcript import EngineMetadata, Transcript
from libs.transcript.model import Segment, Word
from services.transcriber.engines import EngineOptions, OutputShape, UploadLimits
from services.transcriber.longaudio import LongAudio, SplitPolicy

ROOT = Path(__file__).resolve().parents[1]
RATE = 8_000


class FastEngine:
    """Answers every chunk at once with three timed words; nothing is decoded."""

    name = "bench"
    default_model = "bench-1"

    def __init__(self, chunk_seconds: float) -> None:
        self.limits = UploadLimits(
            max_bytes=1 << 40,
            max_seconds=chunk_seconds * 2,
            extensions=None,
            chunk_encoding="pcm",
            parallel_chunks=2,
        )
        self.calls = 0

    def output_shape(self, model: str, timestamps: str) -> OutputShape:
        return OutputShape(response_format=None, segment_timings=True, word_timings=True)

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        self.calls += 1
        words = tuple(
            Word(0.1 + i * 0.3, 0.35 + i * 0.3, w) for i, w in enumerate(("one", "two", "three"))
        )
        return Transcript(
            text="one two three",
            language="en",
            duration=1.0,
            segments=(Segment(0, 0.1, 0.95, "one two three"),),
            words=words,
            model=self.default_model,
            engine=self.name,
            engine_metadata=EngineMetadata(
                request_id=f"req-{self.calls}", raw_response={"n": self.calls}
            ),
        )

    async def check_credentials(self) -> bool:
        return True


def write_wav(path: Path, seconds: float) -> None:
    """A tone with a short pause every second, so every chunk has a quiet place to cut."""
    second = (np.sin(2 * np.pi * 300 * np.arange(RATE) / RATE) * 6000).astype("<i2")
    second[int(RATE * 0.8) :] = 0
    block = np.tile(second, 60).tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        left = int(seconds)
        while left > 0:
            n = min(60, left)
            out.writeframes(block[: n * RATE * 2])
            left -= n


def write_speech(path: Path, seconds: float) -> None:
    """The fixture sentence (6.4 s) every 10 s, silence between: real work for the engine."""
    with wave.open(str(ROOT / "tests" / "fixtures" / "hello_campaign.wav"), "rb") as src:
        voice = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    block = np.zeros(10 * 16_000, dtype="<i2")
    block[: voice.size] = voice
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        for _ in range(int(seconds // 10) + 1):
            out.writeframes(block.tobytes())


def rss_mb(proc: psutil.Process) -> float:
    return round(proc.memory_info().rss / 2**20, 1)


async def run(chunks: int, chunk_seconds: float, offline: bool = False) -> dict[str, Any]:
    proc = psutil.Process()
    saved = {"chunks": 0, "bytes": 0}

    async def load(job_id: uuid.UUID) -> dict[int, StoredChunk]:
        return {}

    async def save(job_id: uuid.UUID, chunk: StoredChunk) -> None:
        # Encoded as Postgres would receive it, then dropped: the database holds the saved
        # chunks, not this process, so they must not count in its RSS.
        saved["chunks"] += 1
        saved["bytes"] += len(msgspec.json.encode(chunk))

    policy = SplitPolicy(
        chunk_seconds=chunk_seconds,
        search_seconds=chunk_seconds / 4,
        overlap_seconds=0.1,
        chunk_concurrency=2,
    )
    long_audio = LongAudio(load, save, policy)
    engine: Any = FastEngine(chunk_seconds)
    if offline:
        from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig

        engine = FasterWhisperEngine(WhisperConfig(window_seconds=chunk_seconds + 1))
        await engine.warm_up()
    samples: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-long-memory-") as tmp:
        audio = Path(tmp) / "long.wav"
        if offline:
            write_speech(audio, chunks * chunk_seconds - 1)
        else:
            write_wav(audio, chunks * chunk_seconds - 1)
        gc.collect()
        before = rss_mb(proc)

        async def on_chunk(done: int, total: int) -> None:
            samples[done] = rss_mb(proc)

        started = time.perf_counter()
        transcript = await long_audio.transcribe(
            engine,
            audio,
            EngineOptions(model=None, language="en", prompt=None, timestamps="word"),
            job_id=uuid.uuid4(),
            model=engine.default_model,
            on_chunk=on_chunk,
        )
        seconds = time.perf_counter() - started
        planned = len(transcript.engine_metadata.chunks or ())
        words = len(transcript.words or ())
        del transcript
        gc.collect()
        after = rss_mb(proc)
        # What of that is free memory the C allocator kept (glibc returns it on request).
        trimmed = after
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            trimmed = rss_mb(proc)
    done = sorted(samples)
    at = {f: samples[done[min(len(done) - 1, round(f * (len(done) - 1)))]] for f in (0.1, 0.5, 1.0)}
    growth = (at[1.0] - at[0.1]) / max(1, 0.9 * planned) * 1000
    return {
        "chunks": planned,
        "audio_seconds": round(planned * chunk_seconds),
        "words": words,
        "saved_chunks": saved["chunks"],
        "seconds": round(seconds, 1),
        "rss_mb": {
            "before": before,
            "at_10pct": at[0.1],
            "at_50pct": at[0.5],
            "at_100pct": at[1.0],
            "peak": max(samples.values()),
            "after": after,
            "after_malloc_trim": trimmed,
        },
        "growth_mb_per_1000_chunks": round(growth, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--chunk-seconds", type=float, default=2.0)
    parser.add_argument(
        "--engine",
        choices=("fast", "offline"),
        default="fast",
        help="offline: the real faster-whisper engine (slow; use fewer, longer chunks)",
    )
    parser.add_argument("--label", default="current", help="the run's name in the results file")
    args = parser.parse_args()
    result = asyncio.run(run(args.chunks, args.chunk_seconds, args.engine == "offline"))
    print(result)
    # One file for every run: each label (e.g. before-2000, after-2000) keeps its own entry.
    path = ROOT / "bench" / "results" / "long_audio_memory.json"
    runs: dict[str, Any] = {}
    if path.exists():
        runs = json.loads(path.read_text()).get("runs", {})
    runs[f"{args.label}-{args.engine}-{args.chunks}"] = result
    write_results(path, {"runs": runs})


if __name__ == "__main__":
    main()
