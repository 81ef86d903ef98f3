"""Ingest benchmarks (issue #3), on embedded servers started here.

    python -m bench.ingest_bench memory [--gib 1] [--runs 3]
        peak RSS (VmHWM) of ONE `transcribe ingest` process while it streams a URL download of
        1 GiB to S3; the body is generated on the fly by a loopback server (never on disk).
        Target: < 150 MB.
    python -m bench.ingest_bench throughput [--jobs 640] [--concurrency 32] [--rounds 3]
        accepted submissions/s at concurrency 32, each a different URL of a 256 KiB recording on
        a loopback server, against raw S3 PUTs/s of the same bytes at the same concurrency through
        the same S3 client code, measured alternately in the same run. Target: ratio >= 0.7.
        Each round also measures a "floor" server: a process that only streams each URL to S3
        through the same HTTP and S3 client code (no key, no checks, no database, no event), the
        most any ingest could do on this machine; its ratio bounds what the target can mean here.

Real nats-server, Postgres and SeaweedFS run in a temp dir; ingest runs as its own process (so
its RSS is its own). Results: bench/results/ingest_memory.json, bench/results/ingest_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from bench.infra import infrastructure
from embedded.demo import serve
from libs.blobstore import S3BlobStore
from libs.settings import S3Settings, Settings
from tests.stack_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-" + uuid.uuid4().hex
CHUNK = 1024 * 1024


def wav_header(data_bytes: int) -> bytes:
    """A 16 kHz mono 16-bit WAV header announcing `data_bytes` of PCM."""
    riff = min(36 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data" + struct.pack("<I", min(data_bytes, 0xFFFFFFFF))
    )  # fmt: skip


def body_app(size_of: dict[str, int]) -> web.Application:
    """GET /<name>?n=<bytes>: a WAV of exactly n bytes, generated chunk by chunk."""
    pattern = bytes(range(256)) * (CHUNK // 256)

    async def handler(request: web.Request) -> web.StreamResponse:
        total = int(request.query["n"])
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        resp.content_length = total
        await resp.prepare(request)
        head = wav_header(total - 44)
        await resp.write(head)
        left = total - len(head)
        while left > 0:
            piece = pattern[: min(CHUNK, left)]
            await resp.write(piece)
            left -= len(piece)
        size_of[request.path] = total
        return resp

    app = web.Application()
    app.router.add_get("/{name}", handler)
    return app


def floor_app(s3: S3Settings) -> web.Application:
    """URL in, object in S3, nothing else: the floor under ingest's cost per submission."""
    store_key = web.AppKey("store", S3BlobStore)
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def clients(app: web.Application) -> AsyncIterator[None]:
        async with S3BlobStore.open(s3) as store, aiohttp.ClientSession() as session:
            app[store_key] = store
            app[session_key] = session
            yield

    async def transcribe(request: web.Request) -> web.Response:
        form = await request.post()
        async with request.app[session_key].get(str(form["url"])) as resp:

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    yield chunk

            key = f"floor/{uuid.uuid4()}.wav"
            await request.app[store_key].put_stream(key, chunks(), "audio/wav")
        return web.json_response({"audio_file_id": key, "status": "QUEUED", "b2_key": key})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.cleanup_ctx.append(clients)
    app.router.add_post("/api/media/transcribe", transcribe)
    app.router.add_get("/readyz", ready)
    return app


def floor_server() -> None:
    import uvloop

    s3 = S3Settings(
        endpoint=os.environ["BACKBLAZE_B2_S3_ENDPOINT"],
        bucket=os.environ["BACKBLAZE_B2_BUCKET"],
        access_key=os.environ["BACKBLAZE_B2_KEY_ID"],
        secret_key=os.environ["BACKBLAZE_B2_APPLICATION_KEY"],
    )
    web.run_app(
        floor_app(s3),
        host="127.0.0.1",
        port=int(os.environ["INGEST_PORT"]),
        loop=uvloop.new_event_loop(),
        print=None,
        access_log=None,
    )


@asynccontextmanager
async def ingest_process(
    settings: Settings, allow: str, max_bytes: int, *, floor: bool = False
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    s3 = settings.require_s3()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.require_database_url(),
        "NATS_URL": settings.require_nats_url(),
        "BACKBLAZE_B2_S3_ENDPOINT": s3.endpoint,
        "BACKBLAZE_B2_BUCKET": s3.bucket,
        "BACKBLAZE_B2_KEY_ID": s3.access_key,
        "BACKBLAZE_B2_APPLICATION_KEY": s3.secret_key,
        "API_KEY": API_KEY,
        "INGEST_PORT": str(port),
        "SSRF_ALLOWLIST": allow,
        "MAX_UPLOAD_BYTES": str(max_bytes),
    }
    argv = (
        [sys.executable, "-m", "bench.ingest_bench", "floor-server"]
        if floor
        else [str(Path(sys.executable).parent / "transcribe"), "ingest"]
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(600):
                try:
                    async with s.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("ingest did not become ready")
        yield proc, base
    finally:
        proc.terminate()
        await proc.wait()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def submit(session: aiohttp.ClientSession, base: str, url: str) -> dict[str, Any]:
    async with session.post(
        base + "/api/media/transcribe",
        data={"url": url, "b2_prefix": "bench"},
        headers={"X-API-Key": API_KEY},
        timeout=aiohttp.ClientTimeout(total=600),
    ) as r:
        body: dict[str, Any] = await r.json()
        if r.status != 200:
            raise RuntimeError(f"submit answered {r.status}: {body}")
        return body


async def memory(gib: float, runs: int) -> dict[str, Any]:
    size = int(gib * 1024**3)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        async with infrastructure(Path(tmp), api_key=API_KEY) as settings:
            served: dict[str, int] = {}
            async with serve(body_app(served)) as body_url:
                allow = body_url.split("://", 1)[1]
                async with ingest_process(settings, allow, size + CHUNK) as (proc, base):
                    baseline = status_kib(proc.pid, "VmRSS")
                    per_run = []
                    async with (
                        aiohttp.ClientSession() as session,
                        S3BlobStore.open(settings.require_s3()) as store,
                    ):
                        for i in range(runs):
                            started = time.perf_counter()
                            body = await submit(session, base, f"{body_url}/big{i}.wav?n={size}")
                            elapsed = time.perf_counter() - started
                            hwm = status_kib(proc.pid, "VmHWM")
                            per_run.append(
                                {"seconds": round(elapsed, 2), "peak_rss_mb": round(hwm / 1024, 1)}
                            )
                            print(
                                f"run {i + 1}: {size / 1024**3:.2f} GiB in {elapsed:.1f} s "
                                f"({size / elapsed / 1024**2:.0f} MiB/s), VmHWM {hwm / 1024:.1f} MB",
                                flush=True,
                            )
                            # Keep the temp disk small: the object has done its job.
                            await store.delete(body["b2_key"])
    peak = statistics.median(r["peak_rss_mb"] for r in per_run)
    return {
        "benchmark": "ingest_memory",
        "download_bytes": size,
        "runs": per_run,
        "baseline_rss_mb": round(baseline / 1024, 1),
        "median_peak_rss_mb": peak,
        "median_seconds": statistics.median(r["seconds"] for r in per_run),
        "target_peak_rss_mb": 150,
        "met": peak < 150,
    }


def _cpu_seconds(ingest_pid: int, floor_pid: int) -> dict[str, float]:
    """CPU used so far by each party: this process (client, body server), ingest, the floor
    server and the embedded servers (children of this process)."""
    groups = {"ingest": 0.0, "floor": 0.0, "s3": 0.0, "postgres": 0.0, "nats": 0.0}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            name = proc.name()
        except psutil.Error:
            continue
        used = times.user + times.system
        if proc.pid == me.pid:
            groups["bench"] = used
        elif proc.pid == ingest_pid:
            groups["ingest"] += used
        elif proc.pid == floor_pid:
            groups["floor"] += used
        elif name == "weed":
            groups["s3"] += used
        elif name.startswith("postgres"):
            groups["postgres"] += used
        elif name == "nats-server":
            groups["nats"] += used
    return groups


async def _phase(
    n: int, concurrency: int, one: Any, pids: tuple[int, int]
) -> tuple[float, dict[str, float]]:
    """Seconds for `n` calls of `one` at `concurrency`, and each party's CPU ms per call."""
    before = _cpu_seconds(*pids)
    seconds = await _pool(n, concurrency, one)
    after = _cpu_seconds(*pids)
    cpu = {k: round((after[k] - before.get(k, 0.0)) * 1000 / n, 2) for k in after}
    return seconds, {k: v for k, v in cpu.items() if v > 0}


async def _pool(n: int, concurrency: int, one: Any) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def throughput(jobs: int, concurrency: int, rounds: int, size: int) -> dict[str, Any]:
    payload = wav_header(size - 44) + os.urandom(size - 44)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        async with infrastructure(Path(tmp), api_key=API_KEY) as settings:
            served: dict[str, int] = {}
            async with serve(body_app(served)) as body_url:
                allow = body_url.split("://", 1)[1]
                async with (
                    ingest_process(settings, allow, 10 * size) as (ingest, base),
                    ingest_process(settings, allow, 10 * size, floor=True) as (floor, floor_base),
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=concurrency)
                    ) as session,
                    S3BlobStore.open(settings.require_s3()) as store,
                ):
                    # Warm-up: connections, prepared statements, the S3 client.
                    for target in (base, floor_base):
                        await _pool(
                            concurrency,
                            concurrency,
                            lambda i, t=target: submit(session, t, f"{body_url}/w{i}.wav?n={size}"),
                        )
                    rows = []
                    for r in range(rounds):
                        tag = uuid.uuid4().hex[:8]

                        async def put(i: int, tag: str = tag) -> None:
                            await store.put_bytes(f"raw/{tag}/{i}.wav", payload, "audio/wav")

                        async def sub(i: int, tag: str = tag) -> None:
                            await submit(session, base, f"{body_url}/{tag}-{i}.wav?n={size}")

                        async def bare(i: int, tag: str = tag) -> None:
                            await submit(session, floor_base, f"{body_url}/f{tag}-{i}.wav?n={size}")

                        pids = (ingest.pid, floor.pid)
                        raw_s, raw_cpu = await _phase(jobs, concurrency, put, pids)
                        floor_s, floor_cpu = await _phase(jobs, concurrency, bare, pids)
                        ingest_s, ingest_cpu = await _phase(jobs, concurrency, sub, pids)
                        row: dict[str, Any] = {
                            "raw_puts_per_s": round(jobs / raw_s, 1),
                            "floor_per_s": round(jobs / floor_s, 1),
                            "accepted_per_s": round(jobs / ingest_s, 1),
                        }
                        row["ratio"] = round(row["accepted_per_s"] / row["raw_puts_per_s"], 3)
                        row["floor_ratio"] = round(row["floor_per_s"] / row["raw_puts_per_s"], 3)
                        row["load_average_1m"] = round(os.getloadavg()[0], 2)
                        # CPU ms per request of each party, per phase: on a small shared machine
                        # these, not latency, set the rates.
                        row["cpu_ms_per_request"] = {
                            "raw": raw_cpu,
                            "floor": floor_cpu,
                            "ingest": ingest_cpu,
                        }
                        rows.append(row)
                        print(
                            f"round {r + 1}: raw S3 PUT {row['raw_puts_per_s']}/s, "
                            f"floor {row['floor_per_s']}/s (ratio {row['floor_ratio']}), "
                            f"ingest accepted {row['accepted_per_s']}/s, ratio {row['ratio']}; "
                            f"cpu ms/request {json.dumps(row['cpu_ms_per_request'])}",
                            flush=True,
                        )
    ratio = statistics.median(r["ratio"] for r in rows)
    return {
        "benchmark": "ingest_throughput",
        "jobs_per_round": jobs,
        "concurrency": concurrency,
        "bytes_per_file": size,
        "rounds": rows,
        "median_raw_puts_per_s": statistics.median(r["raw_puts_per_s"] for r in rows),
        "median_accepted_per_s": statistics.median(r["accepted_per_s"] for r in rows),
        "median_floor_per_s": statistics.median(r["floor_per_s"] for r in rows),
        "median_floor_ratio": statistics.median(r["floor_ratio"] for r in rows),
        "median_ratio": ratio,
        "cpus": os.cpu_count(),
        "target_ratio": 0.7,
        "met": ratio >= 0.7,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="which", required=True)
    sub.add_parser("floor-server", help="(internal) the floor server, see the module doc")
    m = sub.add_parser("memory")
    m.add_argument("--gib", type=float, default=1.0)
    m.add_argument("--runs", type=int, default=3)
    t = sub.add_parser("throughput")
    t.add_argument("--jobs", type=int, default=640)
    t.add_argument("--concurrency", type=int, default=32)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--kib", type=int, default=256)
    args = parser.parse_args()
    if args.which == "floor-server":
        floor_server()
        return
    if args.which == "memory":
        result = asyncio.run(memory(args.gib, args.runs))
        name = "ingest_memory"
    else:
        result = asyncio.run(throughput(args.jobs, args.concurrency, args.rounds, args.kib * 1024))
        name = "ingest_throughput"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
