"""Multichannel calls (issue #13), on embedded servers started here.

    python -m bench.conversation_bench ratio [--minutes 10] [--rounds 3]   # stereo vs mono time
    python -m bench.conversation_bench long [--hours 2]                   # stereo peak RSS

Both run ONE `transcribe transcriber` process (as bench/transcriber_bench.py does) against real
nats-server, Postgres and SeaweedFS and the fake OpenAI server in its own process answering each
request after `--latency` seconds (1 s). `ratio` submits the same call as a stereo file
(`multichannel=auto`, two distinct voices: each channel transcribed on its own) and as its mono
downmix, alternately, and times each from publishing AudioStored to the transcriptions row;
target stereo <= 1.3 x mono. `long` samples the worker's RSS while a 2-hour stereo call is split
per channel and transcribed; target < 300 MB, the mono limit.
Results: bench/results/conversation_ratio.json, bench/results/conversation_long_rss.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import asyncpg
import nats
import numpy as np
import psutil

from bench.infra import infrastructure
from bench.transcriber_bench import _put_file, start_fake, start_worker
from libs.blobstore import S3BlobStore
from libs.contracts import AudioStored, encode, new_event_id, subjects, utcnow
from libs.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "hello_campaign.wav"
TENANT = "bench-calls"

INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, campaign_name, bucket,
    b2_object_key, content_type, size_bytes, sha256, multichannel)
SELECT $1, id, $2, 'bench', $3, $4, 'audio/wav', $5, $6, 'auto'
FROM media_pipeline.api_keys WHERE is_bootstrap LIMIT 1
"""
DONE = "SELECT count(*) FROM media_pipeline.transcriptions WHERE audio_file_id = $1::uuid"
METADATA = "SELECT metadata FROM media_pipeline.transcriptions WHERE audio_file_id = $1::uuid"


def write_call(path: Path, seconds: float, *, stereo: bool) -> None:
    """The fixture sentence taking turns: left at 0, 12, 24 s ..., right at 6, 18, 30 s ...
    (two different voices as far as correlation goes); the mono file is their downmix."""
    with wave.open(str(FIXTURE)) as w:
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int32)
    rate = 16_000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2 if stereo else 1)
        out.setsampwidth(2)
        out.setframerate(rate)
        block = 60 * rate  # write a minute at a time: constant memory for two hours
        for minute in range(int(np.ceil(seconds / 60))):
            n = min(block, int(seconds * rate) - minute * block)
            left = np.zeros(n, dtype=np.int32)
            right = np.zeros(n, dtype=np.int32)
            for turn in range(0, 60, 6):
                target = left if turn % 12 == 0 else right
                at = turn * rate
                piece = speech[: max(0, min(speech.size, n - at))]
                target[at : at + piece.size] += piece
            if stereo:
                frames = np.stack([left, right], axis=1).astype("<i2")
            else:
                frames = ((left + right) // 2).astype("<i2")
            out.writeframes(frames.tobytes())


async def submit(settings: Settings, audio: Path) -> tuple[str, float]:
    """A job as ingest leaves it; returns its id and the time its AudioStored was published."""
    job_id = str(uuid.uuid4())
    key = f"{TENANT}/bench/audio/15550001/{job_id}.wav"
    pool = await asyncpg.create_pool(settings.require_database_url(), min_size=1, max_size=1)
    nc = await nats.connect(settings.require_nats_url())
    try:
        async with S3BlobStore.open(settings.require_s3()) as store:
            sha = await _put_file(store, key, audio)
        size = audio.stat().st_size
        await pool.execute(INSERT_JOB, uuid.UUID(job_id), TENANT, "bench", key, size, sha)
        event = AudioStored(
            event_id=new_event_id(), occurred_at=utcnow(), audio_file_id=job_id, tenant=TENANT,
            campaign="bench", storage_key=key, content_type="audio/wav", size=size, sha256=sha,
            multichannel="auto",
        )  # fmt: skip
        published = time.perf_counter()
        await nc.jetstream().publish(subjects.audio_stored(TENANT), encode(event))
    finally:
        await nc.close()
        await pool.close()
    return job_id, published


async def wait_done(
    pool: asyncpg.Pool, job_id: str, worker: Any = None, timeout: float = 1800
) -> list[int]:
    """Polls until the job's transcription row exists; the worker's RSS samples meanwhile."""
    proc = psutil.Process(worker.pid) if worker is not None else None
    rss: list[int] = []
    t0 = time.perf_counter()
    while not await pool.fetchval(DONE, job_id):
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                rss.append(proc.memory_info().rss)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"job {job_id} not done in {timeout} s")
        await asyncio.sleep(0.05 if proc is None else 0.2)
    return rss


async def ratio(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        stereo, mono = Path(tmp) / "stereo.wav", Path(tmp) / "mono.wav"
        write_call(stereo, args.minutes * 60, stereo=True)
        write_call(mono, args.minutes * 60, stereo=False)
        async with infrastructure(Path(tmp), api_key="bench-key") as settings:
            fake, base_url, key = await start_fake(args.latency)
            worker = await start_worker(settings, base_url, key, 4)
            pool = await asyncpg.create_pool(settings.require_database_url())
            times: dict[str, list[float]] = {"stereo": [], "mono": []}
            speakers: dict[str, Any] = {}
            try:
                for _ in range(args.rounds):
                    for name, audio in (("mono", mono), ("stereo", stereo)):
                        job_id, published = await submit(settings, audio)
                        await wait_done(pool, job_id)
                        times[name].append(time.perf_counter() - published)
                        metadata = json.loads(await pool.fetchval(METADATA, job_id))
                        speakers[name] = metadata.get("speakers", "none")
            finally:
                await pool.close()
                worker.terminate()
                await worker.wait()
                fake.terminate()
                await fake.wait()
    mono_s, stereo_s = statistics.median(times["mono"]), statistics.median(times["stereo"])
    return {
        "audio_minutes": args.minutes,
        "fake_latency_s": args.latency,
        "rounds": args.rounds,
        "mono_seconds": [round(t, 2) for t in times["mono"]],
        "stereo_seconds": [round(t, 2) for t in times["stereo"]],
        "median_mono_s": round(mono_s, 2),
        "median_stereo_s": round(stereo_s, 2),
        "ratio": round(stereo_s / mono_s, 3),
        "target_ratio": 1.3,
        "speakers": speakers,
    }


async def long_rss(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-calls-long-") as tmp:
        audio = Path(tmp) / "long.wav"
        write_call(audio, args.hours * 3600, stereo=True)
        async with infrastructure(Path(tmp), api_key="bench-key") as settings:
            fake, base_url, key = await start_fake(args.latency)
            worker = await start_worker(settings, base_url, key, 4)
            pool = await asyncpg.create_pool(settings.require_database_url())
            try:
                job_id, published = await submit(settings, audio)
                rss = await wait_done(pool, job_id, worker)
                seconds = time.perf_counter() - published
                metadata = json.loads(await pool.fetchval(METADATA, job_id))
            finally:
                await pool.close()
                worker.terminate()
                await worker.wait()
                fake.terminate()
                await fake.wait()
        return {
            "audio_hours": args.hours,
            "audio_bytes": audio.stat().st_size,
            "speakers": metadata.get("speakers"),
            "chunks_per_channel": [len(c["chunks"]) for c in metadata.get("channels", [])],
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(max(rss) / 2**20, 1),
            "median_rss_mb": round(statistics.median(rss) / 2**20, 1),
            "limit_mb": 300,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("ratio")
    r.add_argument("--minutes", type=float, default=10.0)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--latency", type=float, default=1.0)
    long = sub.add_parser("long")
    long.add_argument("--hours", type=float, default=2.0)
    long.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    if args.what == "ratio":
        result = asyncio.run(ratio(args))
        name = "conversation_ratio"
    else:
        result = asyncio.run(long_rss(args))
        name = "conversation_long_rss"
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
