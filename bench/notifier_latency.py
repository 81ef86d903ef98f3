"""Commit-to-webhook latency of the notifier at light load.

From the transcriber's commit (`libs.jobs.lifecycle.complete`: the transaction that
writes the transcription and TranscriptReady into the outbox) to the signed webhook arriving at
a loopback receiver that verifies it with `standardwebhooks`. Everything real: embedded
Postgres and nats-server, the outbox relay (a task here, as in the transcriber process), and
the notifier as its own process (`transcribe notifier`), or as a task with --in-process.

    python bench/notifier_latency.py [--events 300] [--gap 0.05] [--in-process]

Prints percentiles and writes bench/results/notifier_latency.json. Target: p50 < 30 ms,
p99 < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from libs import apikeys, bus, db
from libs.contracts import TranscriptKeys
from libs.jobs import lifecycle as repository
from libs.outbox import OutboxRelay
from libs.provision import ensure_bus, migrate_database
from libs.settings import Settings
from libs.transcript import Transcript

RESULTS = Path(__file__).resolve().parent / "results" / "notifier_latency.json"

INSERT_JOB = """
INSERT INTO media_pipeline.audio_files
    (id, api_key_id, tenant_prefix, phone, campaign_name, recording_id, bucket, b2_object_key,
     content_type, size_bytes, sha256, status)
VALUES ($1, $2, 'bench', '+441632960001', 'bench', $3, 'b', $4, 'audio/wav', 1, 'x',
        'processing')
"""


# Both are now() of their transaction: when the relay claimed the row (before publishing) and
# when the notifier began writing the delivery row.
STAGES = """
SELECT extract(epoch FROM o.published_at)::float8 AS published,
       extract(epoch FROM d.created_at)::float8 AS scheduled
FROM media_pipeline.webhook_deliveries d
JOIN media_pipeline.outbox o ON o.event_id = d.event_id
WHERE d.audio_file_id = $1
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Receiver:
    def __init__(self, secret: str) -> None:
        self._verifier = Webhook(secret)
        self.arrivals: dict[str, float] = {}
        self.wall_arrivals: dict[str, float] = {}
        self.events: dict[str, asyncio.Event] = {}
        self.rejected = 0

    def expect(self, audio_file_id: str) -> asyncio.Event:
        self.events[audio_file_id] = asyncio.Event()
        return self.events[audio_file_id]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.perf_counter()
        try:
            payload = self._verifier.verify(body, dict(request.headers))
        except Exception:
            self.rejected += 1
            return web.Response(status=400)
        job = payload["data"]["audio_file_id"]
        self.arrivals.setdefault(job, now)
        self.wall_arrivals.setdefault(job, time.time())
        if job in self.events:
            self.events[job].set()
        return web.Response(status=204)


async def start_notifier_process(settings: Settings) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.require_database_url(),
        NATS_URL=settings.require_nats_url(),
        SSRF_ALLOWLIST=settings.ssrf_allowlist,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from services.cli import main; sys.exit(main(['notifier']))",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(Path(__file__).resolve().parent.parent),
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        async with (
            PostgresServer(Path(tmp) / "pg") as pg,
            NatsServer(Path(tmp) / "nats") as nats,
        ):
            return await measure(args, pg.dsn, nats.url)


async def measure(args: argparse.Namespace, dsn: str, nats_url: str) -> dict[str, Any]:
    await migrate_database(dsn)
    secret = apikeys.generate_webhook_secret()
    receiver = Receiver(secret)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    settings = replace(
        Settings.from_env({}),
        database_url=dsn,
        nats_url=nats_url,
        ssrf_allowlist=f"127.0.0.1:{port}",
    )
    await ensure_bus(settings)

    pool = await db.create_pool(dsn, max_size=10)
    async with pool.acquire() as conn:
        _, key = await apikeys.create(
            conn, name="bench", tenant_prefix="bench", webhook_url=url, webhook_secret=secret
        )
    nc = await bus.connect(settings.nats_servers, name="bench-relay")
    stop = asyncio.Event()
    relay = OutboxRelay(pool, nc.jetstream())
    tasks = [asyncio.create_task(relay.run(stop))]
    proc = None
    if args.in_process:
        from services.notifier import main as notifier_main

        tasks.append(asyncio.create_task(notifier_main.run(settings, stop)))
    else:
        proc = await start_notifier_process(settings)

    transcript = Transcript(
        text="hello this is a test called about your campaign",
        language="en",
        duration=4.2,
        model="bench",
        engine="bench",
    )
    latencies: list[float] = []
    committed_wall: dict[str, float] = {}
    stages: dict[str, list[float]] = {"relay_wakes": [], "publish_to_schedule": [], "deliver": []}
    try:
        total = args.warmup + args.events
        job_ids = [uuid.uuid4() for _ in range(total)]
        for i, job_id in enumerate(job_ids):
            await pool.execute(INSERT_JOB, job_id, uuid.UUID(key.id), f"r{i}", f"bench/{job_id}")
        for i, job_id in enumerate(job_ids):
            job = await repository.load_job(pool, str(job_id))
            assert job is not None
            keys = TranscriptKeys(json=f"bench/{job_id}.json", txt=f"bench/{job_id}.txt")
            arrived = receiver.expect(str(job_id))
            await repository.complete(pool, job, transcript, keys, force=False, trace_id=None)
            committed = time.perf_counter()
            committed_wall[str(job_id)] = time.time()
            # The first waits include the notifier process starting up.
            await asyncio.wait_for(arrived.wait(), 60 if i == 0 else 10)
            if i >= args.warmup:
                latencies.append((receiver.arrivals[str(job_id)] - committed) * 1000)
            await asyncio.sleep(args.gap)

        # Where the time goes, on the machine's one wall clock: commit -> the relay's claim ->
        # (publish, JetStream, the notifier's fetch) the notifier's delivery-row transaction ->
        # (commit, NOTIFY, claim, sign, POST) arrival.
        for job_id in job_ids[args.warmup :]:
            row = await pool.fetchrow(STAGES, job_id)
            assert row is not None
            published, scheduled = row["published"], row["scheduled"]
            key_ = str(job_id)
            stages["relay_wakes"].append((published - committed_wall[key_]) * 1000)
            stages["publish_to_schedule"].append((scheduled - published) * 1000)
            stages["deliver"].append((receiver.wall_arrivals[key_] - scheduled) * 1000)

        # Burst: many commits at once (8 concurrent), to see the notifier's throughput (no target).
        burst_ids = [uuid.uuid4() for _ in range(args.burst)]
        for i, job_id in enumerate(burst_ids):
            await pool.execute(INSERT_JOB, job_id, uuid.UUID(key.id), f"b{i}", f"bench/{job_id}")
        waits = [receiver.expect(str(j)) for j in burst_ids]
        burst_start = time.perf_counter()
        slots = asyncio.Semaphore(8)

        async def commit(job_id: uuid.UUID) -> None:
            async with slots:
                job = await repository.load_job(pool, str(job_id))
                assert job is not None
                keys = TranscriptKeys(json=f"bench/{job_id}.json", txt=f"bench/{job_id}.txt")
                await repository.complete(pool, job, transcript, keys, force=False, trace_id=None)

        await asyncio.gather(*(commit(j) for j in burst_ids))
        committed_all = time.perf_counter() - burst_start
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in waits)), 120)
        burst_seconds = max(receiver.arrivals[str(j)] for j in burst_ids) - burst_start
    finally:
        stop.set()
        if proc is not None:
            proc.terminate()
            await proc.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.drain()
        await pool.close()
        await runner.cleanup()

    return {
        "name": "notifier_latency",
        "what": "transcriber commit (TranscriptReady in outbox) -> verified webhook at loopback",
        "mode": "notifier task" if args.in_process else "notifier process",
        "events": len(latencies),
        "gap_seconds": args.gap,
        "ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(percentile(latencies, 0.90), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "targets_ms": {"p50": 30, "p99": 150},
        "stages_p50_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "burst": {
            "events": args.burst,
            "commits_seconds": round(committed_all, 3),
            "all_delivered_seconds": round(burst_seconds, 3),
            "webhooks_per_second": round(args.burst / burst_seconds, 1),
        },
        "rejected_signatures": receiver.rejected,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between events")
    parser.add_argument("--burst", type=int, default=500, help="events in the burst phase")
    parser.add_argument("--in-process", action="store_true")
    result = asyncio.run(main(parser.parse_args()))
    ms = result["ms"]
    print(
        f"{result['mode']}: {result['events']} events, commit -> webhook "
        f"p50 {ms['p50']} ms, p90 {ms['p90']} ms, p99 {ms['p99']} ms, max {ms['max']} ms "
        f"(targets p50 < 30, p99 < 150)"
    )
    print(
        f"stage medians (ms): {result['stages_p50_ms']}, load average {result['load_average_1m']}"
    )
    b = result["burst"]
    print(
        f"burst of {b['events']}: committed in {b['commits_seconds']} s, all delivered after "
        f"{b['all_delivered_seconds']} s ({b['webhooks_per_second']} webhooks/s)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
