"""Operations benchmarks (issue #6), on nats-server processes started here.

    python -m bench.ops_bench replay [--events 20000] [--runs 3]
        how fast `transcribe replay` reads the stream: events/s of a filtered scan (the
        ephemeral consumer behind `replay events|audio|webhooks`), and copies/s re-published
        by replay_audio --force (each with a new event_id and Nats-Msg-Id).
    python -m bench.ops_bench failover [--runs 5]
        a 3-node JetStream cluster with an R3 stream: seconds from SIGKILL of the stream leader
        until a publish is acknowledged again (by the new leader).

Results: bench/results/ops_replay.json, bench/results/ops_failover.json (medians quoted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from nats.js import api as js_api

from embedded.nats import NatsServer
from libs.bus import ensure_stream
from libs.contracts import AudioStored, encode, streams, subjects
from libs.replay import replay_audio, scan
from tests.cluster.launcher import NatsCluster

RESULTS = Path(__file__).parent / "results"


def _event(i: int, tenant: str) -> AudioStored:
    return AudioStored(
        event_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), trace_id=uuid.uuid4().hex,
        audio_file_id=str(uuid.uuid4()), tenant=tenant, campaign="bench",
        storage_key=f"{tenant}/bench/audio/unknown/{i}.wav", content_type="audio/wav",
        size=1000, sha256="0" * 64,
    )  # fmt: skip


async def bench_replay(events: int, runs: int) -> dict[str, Any]:
    scans, replays = [], []
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(Path(tmp) / "nats") as server:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_stream(js, streams.stream_spec())
            # Half the events on another tenant: the scan filters on the subject.
            for i in range(events):
                tenant = "bench" if i % 2 == 0 else "other"
                await js.publish(subjects.audio_stored(tenant), encode(_event(i, tenant)))
            for _ in range(runs):
                t = time.perf_counter()
                n = 0
                async for _e in scan(js, f"{subjects.AUDIO_STORED}.bench"):
                    n += 1
                scans.append(n / (time.perf_counter() - t))
                assert n == events // 2
            for _ in range(runs):
                t = time.perf_counter()
                result = await replay_audio(js, start_seq=1, tenant="other", force=True)
                replays.append(result.republished / (time.perf_counter() - t))
            await nc.close()
    return {
        "events_in_stream": events,
        "scan_events_per_s_median": round(statistics.median(scans)),
        "replay_force_copies_per_s_median": round(statistics.median(replays)),
        "runs": runs,
    }


async def bench_failover(runs: int) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cluster = NatsCluster(Path(tmp))
            await cluster.start()
            try:
                nc = await nats.connect(
                    cluster.url.split(","), reconnect_time_wait=0.2, max_reconnect_attempts=-1
                )
                js = nc.jetstream()
                await js.add_stream(js_api.StreamConfig(name="F", subjects=["f.>"], num_replicas=3))
                await js.publish("f.x", b"1")
                info = await js.stream_info("F")
                assert info.cluster is not None and info.cluster.leader
                killed = time.perf_counter()
                cluster.node(info.cluster.leader).kill()
                while True:
                    try:
                        await js.publish("f.x", b"2", timeout=0.5)
                        break
                    except (nats.errors.Error, TimeoutError, OSError):
                        await asyncio.sleep(0.05)
                times.append(time.perf_counter() - killed)
                await nc.close()
            finally:
                await cluster.stop()
    return {
        "failover_seconds_median": round(statistics.median(times), 2),
        "failover_seconds_max": round(max(times), 2),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("replay")
    r.add_argument("--events", type=int, default=20000)
    r.add_argument("--runs", type=int, default=3)
    f = sub.add_parser("failover")
    f.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.what == "replay":
        out = asyncio.run(bench_replay(args.events, args.runs))
        name = "ops_replay"
    else:
        out = asyncio.run(bench_failover(args.runs))
        name = "ops_failover"
    out["measured_at"] = datetime.now(UTC).isoformat()
    print(json.dumps(out, indent=2))
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
