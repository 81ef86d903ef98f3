"""Audio for the console's player: ranged reads from object storage (libs.blobstore
`read_range`, what GET /api/media/{id}/audio streams).

    python -m bench.audio_range_bench [--mib 256] [--seeks 200]

Against an embedded SeaweedFS. Stores one object of --mib MiB (about a 4.5-hour 16 kHz mono
WAV at 256), then (1) streams it whole through read_range while sampling this process's RSS:
peak growth over the starting RSS must stay around the chunk size, not the file's; (2) times
--seeks reads of 256 KiB at random offsets, what a player's seek costs (p50/p95 ms).
Result: bench/results/audio_range.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil

from embedded.seaweed import SeaweedS3Server
from libs.blobstore import S3BlobStore
from libs.settings import S3Settings

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
SEEK_BYTES = 256 * 1024


async def _chunks(total: int) -> AsyncIterator[bytes]:
    block = os.urandom(MIB)
    for _ in range(total // MIB):
        yield block


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.mib * MIB
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        async with SeaweedS3Server(Path(tmp) / "s3") as server:
            settings = S3Settings(
                endpoint=server.endpoint,
                bucket="bench",
                access_key=server.access_key,
                secret_key=server.secret_key,
            )
            async with S3BlobStore.open(settings) as store:
                await store.ensure_bucket()
                key = "bench/audio/long.wav"
                await store.put_stream(key, _chunks(size), "audio/wav")
                info = await store.info(key)
                assert info.size == size

                base = me.memory_info().rss
                peak = base
                read = 0
                started = time.perf_counter()
                async for chunk in store.read_range(key, 0, size - 1):
                    read += len(chunk)
                    peak = max(peak, me.memory_info().rss)
                whole_s = time.perf_counter() - started
                assert read == size

                rng = random.Random(7)
                latencies = []
                for _ in range(args.seeks):
                    first = rng.randrange(0, size - SEEK_BYTES)
                    t0 = time.perf_counter()
                    got = 0
                    async for chunk in store.read_range(key, first, first + SEEK_BYTES - 1):
                        got += len(chunk)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    assert got == SEEK_BYTES
    latencies.sort()
    return {
        "object_mib": args.mib,
        "whole_read_s": round(whole_s, 2),
        "whole_read_mib_per_s": round(args.mib / whole_s, 1),
        "rss_start_mib": round(base / MIB, 1),
        "rss_peak_growth_mib": round((peak - base) / MIB, 1),
        "seeks": args.seeks,
        "seek_256k_p50_ms": round(statistics.median(latencies), 2),
        "seek_256k_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--seeks", type=int, default=200)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audio_range.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
