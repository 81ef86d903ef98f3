"""Transcriber benchmarks (issue #4), on embedded servers started here.

    python -m bench.transcriber_bench throughput [--jobs 640]   # 64 in flight, server answers in 1 s
    python -m bench.transcriber_bench long [--hours 2]          # peak RSS while splitting 2 hours
    python -m bench.transcriber_bench long --engine offline --pause 60   # the same, offline engine

Both run ONE `transcribe transcriber` process against real nats-server, Postgres and SeaweedFS
and the fake OpenAI server (its own process, `--latency`), with jobs created as ingest leaves
them (row + audio in S3 + AudioStored on the stream). A job counts as done when its
transcriptions row exists AND its TranscriptReady outbox row is published.
Results: bench/results/transcriber_throughput.json, bench/results/transcriber_long_rss.json,
bench/results/offline_long_rss.json (`--engine offline`: the whole recording through the offline
engine, which really decodes it; `--pause` spaces the sentences out to keep that short, and
memory does not depend on what the audio says, only on the window the engine decodes at once).
BENCH_WORKER_LOG=<file> (with BENCH_WORKER_LOG_LEVEL=info) keeps the worker's JSON log, whose
transcription_handled / openai_transcribed lines give per-job latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil

from bench.infra import infrastructure
from libs.blobstore import S3BlobStore
from libs.contracts import AudioStored, encode, new_event_id, subjects, utcnow
from libs.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
READY_SUBJECTS = [subjects.transcript_ready("bench"), subjects.transcript_ready("bench-long")]
RESULTS = ROOT / "bench" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "hello_campaign.wav"

INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, campaign_name, bucket,
    b2_object_key, content_type, size_bytes, sha256)
SELECT $1, id, $2, 'bench', $3, $4, 'audio/wav', $5, $6
FROM media_pipeline.api_keys WHERE is_bootstrap LIMIT 1
"""
# Cheap enough to poll 4x a second without loading Postgres: the bench database holds only the
# bench's jobs, so published TranscriptReady rows on the bench tenants' subjects are theirs.
DONE = """
SELECT LEAST(
    (SELECT count(*) FROM media_pipeline.transcriptions WHERE audio_file_id = ANY($1::uuid[])),
    (SELECT count(*) FROM media_pipeline.outbox
      WHERE subject = ANY($2::text[]) AND published_at IS NOT NULL) - $3)
"""


async def start_fake(latency: float) -> tuple[asyncio.subprocess.Process, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency),
        "--text", "hello this is a benchmark transcript",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = json.loads(await proc.stdout.readline())
    return proc, line["listening"], line["api_key"]


async def start_worker(
    settings: Settings, base_url: str, key: str, concurrency: int, *, engine: str = "openai"
) -> Any:
    s3 = settings.require_s3()
    env = {
        **os.environ,
        "DATABASE_URL": settings.require_database_url(),
        "NATS_URL": settings.require_nats_url(),
        "BACKBLAZE_B2_S3_ENDPOINT": s3.endpoint,
        "BACKBLAZE_B2_BUCKET": s3.bucket,
        "BACKBLAZE_B2_KEY_ID": s3.access_key,
        "BACKBLAZE_B2_APPLICATION_KEY": s3.secret_key,
        "OPENAI_API_KEY": key,
        "OPENAI_BASE_URL": base_url,
        "TRANSCRIBE_ENGINE": engine,
        "TRANSCRIBER_CONCURRENCY": str(concurrency),
        "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "warning"),
    }
    log_path = os.environ.get("BENCH_WORKER_LOG")
    out: Any = open(log_path, "ab") if log_path else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.cli import main; main()", "transcriber",
        env=env, cwd=ROOT, stdout=out, stderr=out,
    )  # fmt: skip


async def make_jobs(settings: Settings, audio: Path, count: int, tenant: str) -> list[str]:
    data = audio.read_bytes() if audio.stat().st_size < 50_000_000 else None
    size = audio.stat().st_size
    pool = await asyncpg.create_pool(settings.require_database_url())
    nc = await nats.connect(settings.require_nats_url())
    js = nc.jetstream()
    ids: list[str] = []
    async with S3BlobStore.open(settings.require_s3()) as store:
        sem = asyncio.Semaphore(16)

        async def one() -> None:
            job_id = str(uuid.uuid4())
            key = f"{tenant}/bench/audio/15550001/{job_id}.wav"
            async with sem:
                if data is not None:
                    await store.put_bytes(key, data, "audio/wav")
                    sha = hashlib.sha256(data).hexdigest()
                else:
                    sha = await _put_file(store, key, audio)
                await pool.execute(
                    INSERT_JOB, uuid.UUID(job_id), tenant, store.bucket, key, size, sha
                )
            ids.append(job_id)
            event = AudioStored(
                event_id=new_event_id(), occurred_at=utcnow(), audio_file_id=job_id,
                tenant=tenant, campaign="bench", storage_key=key, content_type="audio/wav",
                size=size, sha256=sha,
            )  # fmt: skip
            await js.publish(subjects.audio_stored(tenant), encode(event))

        await asyncio.gather(*(one() for _ in range(count)))
    await nc.close()
    await pool.close()
    return ids


async def _put_file(store: S3BlobStore, key: str, path: Path) -> str:
    async def chunks() -> Any:
        with path.open("rb") as f:
            while block := f.read(8 * 1024 * 1024):
                yield block

    stored = await store.put_stream(key, chunks(), "audio/wav")
    return str(stored.sha256)


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-transcriber-") as tmp:
        async with infrastructure(Path(tmp), api_key="bench-key") as settings:
            fake, base_url, key = await start_fake(args.latency)
            try:
                for _ in range(args.rounds):
                    rounds.append(await _throughput_round(settings, base_url, key, args))
                    print(json.dumps(rounds[-1]), flush=True)
            finally:
                fake.terminate()
                await fake.wait()
    rates = [r["jobs_per_s_steady"] for r in rounds if r["jobs_per_s_steady"] is not None]
    return {
        "jobs_per_round": args.jobs,
        "concurrency": args.concurrency,
        "engine_latency_s": args.latency,
        "median_jobs_per_s_steady": round(statistics.median(rates), 2) if rates else None,
        "target_jobs_per_s": round(0.8 * args.concurrency / args.latency, 2),
        "median_worker_cpu_ms_per_job": statistics.median(
            r["worker_cpu_ms_per_job"] for r in rounds
        ),
        "cpus": os.cpu_count(),
        "rounds": rounds,
    }


async def _throughput_round(
    settings: Settings, base_url: str, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    ids = await make_jobs(settings, FIXTURE, args.jobs, "bench")
    pool = await asyncpg.create_pool(settings.require_database_url())
    # Earlier rounds' events are published too: count from here.
    baseline = int(
        await pool.fetchval(
            "SELECT count(*) FROM media_pipeline.outbox"
            " WHERE subject = ANY($1::text[]) AND published_at IS NOT NULL",
            READY_SUBJECTS,
        )
    )
    worker = await start_worker(settings, base_url, key, args.concurrency)
    proc = psutil.Process(worker.pid)
    samples: list[tuple[float, int]] = []
    peak_rss = 0
    t0 = time.perf_counter()
    while True:
        done = int(await pool.fetchval(DONE, ids, READY_SUBJECTS, baseline))
        now = time.perf_counter() - t0
        samples.append((now, done))
        with contextlib.suppress(psutil.Error):
            peak_rss = max(peak_rss, proc.memory_info().rss)
        if done >= len(ids) or now > 600:
            break
        await asyncio.sleep(0.25)
    cpu = proc.cpu_times()
    worker.terminate()
    await worker.wait()
    await pool.close()
    # Steady state: rates over 2-second windows between 10% and 90% of completions.
    lo, hi = 0.1 * len(ids), 0.9 * len(ids)
    steady = [(t, d) for t, d in samples if lo <= d <= hi]
    rates = []
    for t1, d1 in steady:
        later = [(t2, d2) for t2, d2 in steady if t2 >= t1 + 2.0]
        if later:
            t2, d2 = later[0]
            rates.append((d2 - d1) / (t2 - t1))
    first_done = next((t for t, d in samples if d > 0), None)
    total = samples[-1][0]
    return {
        "jobs_per_s_steady": round(statistics.median(rates), 2) if rates else None,
        "overall_jobs_per_s": round(len(ids) / total, 2),
        "seconds_total": round(total, 2),
        "seconds_to_first_completion": first_done and round(first_done, 2),
        "worker_peak_rss_mb": round(peak_rss / 2**20, 1),
        # What one job costs the worker process in CPU (start-up included), and how busy the
        # shared machine was: the numbers that explain the rate.
        "worker_cpu_ms_per_job": round((cpu.user + cpu.system) * 1000 / len(ids), 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "completed": samples[-1][1],
    }


def write_long_recording(path: Path, hours: float, pause: float = 2.0) -> None:
    with wave.open(str(FIXTURE)) as w:
        speech = w.readframes(w.getnframes())
    silence = b"\0\0" * int(16000 * pause)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        written = 0
        while written < hours * 3600 * 16000:
            out.writeframes(silence + speech)
            written += (len(silence) + len(speech)) // 2


async def long_rss(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-transcriber-") as tmp:
        audio = Path(tmp) / "long.wav"
        write_long_recording(audio, args.hours, args.pause)
        async with infrastructure(Path(tmp), api_key="bench-key") as settings:
            fake, base_url, key = await start_fake(args.latency)
            try:
                ids = await make_jobs(settings, audio, 1, "bench-long")
                pool = await asyncpg.create_pool(settings.require_database_url())
                worker = await start_worker(settings, base_url, key, 4, engine=args.engine)
                proc = psutil.Process(worker.pid)
                rss: list[int] = []
                t0 = time.perf_counter()
                while True:
                    with contextlib.suppress(psutil.Error):
                        rss.append(proc.memory_info().rss)
                    if (
                        int(await pool.fetchval(DONE, ids, READY_SUBJECTS, 0)) >= 1
                        or time.perf_counter() - t0 > args.timeout
                    ):
                        break
                    await asyncio.sleep(0.2)
                seconds = time.perf_counter() - t0
                chunks = await pool.fetchval(
                    "SELECT jsonb_array_length(metadata->'chunks') FROM"
                    " media_pipeline.transcriptions WHERE audio_file_id = $1::uuid",
                    ids[0],
                )
                worker.terminate()
                await worker.wait()
                await pool.close()
            finally:
                fake.terminate()
                await fake.wait()
        return {
            "engine": args.engine,
            "pause_seconds": args.pause,
            "audio_hours": args.hours,
            "audio_bytes": audio.stat().st_size,
            "chunks": chunks,
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(max(rss) / 2**20, 1),
            "median_rss_mb": round(statistics.median(rss) / 2**20, 1),
            "limit_mb": 300 if args.engine == "openai" else 600,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--jobs", type=int, default=640)
    t.add_argument("--concurrency", type=int, default=64)
    t.add_argument("--latency", type=float, default=1.0)
    t.add_argument("--rounds", type=int, default=3)
    long = sub.add_parser("long")
    long.add_argument("--hours", type=float, default=2.0)
    long.add_argument("--latency", type=float, default=1.0)
    long.add_argument("--engine", choices=("openai", "offline"), default="openai")
    long.add_argument(
        "--pause", type=float, default=2.0, help="seconds of silence between sentences"
    )
    long.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    if args.what == "throughput":
        result = asyncio.run(throughput(args))
        name = "transcriber_throughput"
    else:
        result = asyncio.run(long_rss(args))
        name = "transcriber_long_rss" if args.engine == "openai" else "offline_long_rss"
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
