"""Client CPU per S3 request: aiobotocore vs the data plane (aiohttp + botocore's signer).

    python -m bench.s3_bench [--requests 2000] [--concurrency 16] [--bytes 4000] [--rounds 3]

Against an embedded SeaweedFS on uvloop, as the services run. Each round PUTs then GETs the same
small objects (the size of a rendered transcript) both ways, and reports requests/s and this
process's CPU per request; SeaweedFS's own CPU per request is printed beside it, since on a
shared two-core machine it competes with the client. Result: bench/results/s3_requests.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import uvloop

from embedded.seaweed import SeaweedS3Server
from libs.blobstore import S3BlobStore
from libs.settings import S3Settings

RESULTS = Path(__file__).resolve().parent / "results"


async def _measure(
    n: int, concurrency: int, one: Callable[[int], Awaitable[Any]], weed: psutil.Process
) -> dict[str, float]:
    me = psutil.Process()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    cpu0, weed0, t0 = me.cpu_times(), weed.cpu_times(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu1, weed1 = me.cpu_times(), weed.cpu_times()
    return {
        "per_s": round(n / elapsed, 1),
        "client_cpu_ms": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000 / n, 3),
        "server_cpu_ms": round(
            (weed1.user + weed1.system - weed0.user - weed0.system) * 1000 / n, 3
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    payload = os.urandom(args.bytes)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        async with SeaweedS3Server(Path(tmp) / "s3") as server:
            weed = next(p for p in psutil.Process().children(recursive=True) if p.name() == "weed")
            settings = S3Settings(
                endpoint=server.endpoint,
                bucket="bench",
                access_key=server.access_key,
                secret_key=server.secret_key,
            )
            async with S3BlobStore.open(settings) as store:
                await store.ensure_bucket()
                client = store._client
                for r in range(args.rounds):

                    async def boto_put(i: int, r: int = r) -> None:
                        await client.put_object(
                            Bucket="bench", Key=f"boto/{r}/{i}.json", Body=payload,
                            ContentType="application/json",
                        )  # fmt: skip

                    async def boto_get(i: int, r: int = r) -> None:
                        resp = await client.get_object(Bucket="bench", Key=f"boto/{r}/{i}.json")
                        async with resp["Body"] as body:
                            await body.read()

                    async def plane_put(i: int, r: int = r) -> None:
                        await store.put_bytes(f"plane/{r}/{i}.json", payload, "application/json")

                    async def plane_get(i: int, r: int = r) -> None:
                        await store.get_bytes(f"plane/{r}/{i}.json")

                    row = {}
                    for name, fn in (
                        ("aiobotocore_put", boto_put),
                        ("dataplane_put", plane_put),
                        ("aiobotocore_get", boto_get),
                        ("dataplane_get", plane_get),
                    ):
                        row[name] = await _measure(args.requests, args.concurrency, fn, weed)
                    rounds.append(row)
                    print(json.dumps(row), flush=True)

    def median(name: str, field: str) -> float:
        return statistics.median(r[name][field] for r in rounds)

    summary = {
        op: {
            "aiobotocore_client_cpu_ms": median(f"aiobotocore_{op}", "client_cpu_ms"),
            "dataplane_client_cpu_ms": median(f"dataplane_{op}", "client_cpu_ms"),
            "cpu_ratio": round(
                median(f"dataplane_{op}", "client_cpu_ms")
                / median(f"aiobotocore_{op}", "client_cpu_ms"),
                3,
            ),
            "aiobotocore_per_s": median(f"aiobotocore_{op}", "per_s"),
            "dataplane_per_s": median(f"dataplane_{op}", "per_s"),
            "server_cpu_ms": median(f"dataplane_{op}", "server_cpu_ms"),
        }
        for op in ("put", "get")
    }
    return {
        "benchmark": "s3_requests",
        "requests_per_round": args.requests,
        "concurrency": args.concurrency,
        "bytes": args.bytes,
        "cpus": os.cpu_count(),
        "median": summary,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bytes", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = uvloop.run(run(args))
    print(json.dumps(result["median"], indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "s3_requests.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
