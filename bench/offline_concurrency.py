"""How to spend a machine's cores on the offline engine: requests at once x threads per request.

    python -m bench.offline_concurrency [--corpus DIR] [--rounds 3]
                                        [--configs 1x0,1x1,2x1,1x2,2x2]

--corpus DIR: a corpus directory (`refs.tsv`, `<clip>.wav`, `tel/<clip>.wav`); default
tests/fixtures/speech, the three clips the repository carries. The published numbers come from
the full speech-dev corpus (docs/benchmarks.md, "The speech corpus").

Each config `JxT` is one FasterWhisperEngine with OFFLINE_JOBS=J and OFFLINE_THREADS=T (0:
CTranslate2's default, one per core), fed the whole batch at once (the real speech-dev clips at
16 kHz, each submitted `--copies` times) as a transcriber with that many jobs in flight would.
Throughput is audio seconds per wall second over the batch; the configs run one after the other
within each round, and rounds repeat in a rotated order, so their medians compare like with like
on a shared machine. Peak RSS of the process is read after each config (it only grows: each
config adds its own model and buffers). Results: bench/results/offline_concurrency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from bench.offline_wer import DEFAULT_CORPUS, load_refs
from bench.report import write_results
from services.transcriber.engines.base import EngineOptions
from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "offline_concurrency.json"


async def run_batch(engine: FasterWhisperEngine, batch: list[Path]) -> tuple[float, float]:
    started = time.perf_counter()
    transcripts = await asyncio.gather(
        *(engine.transcribe(path, EngineOptions(timestamps="segment")) for path in batch)
    )
    wall = time.perf_counter() - started
    return sum(t.duration for t in transcripts), wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--configs", default="1x0,1x1,2x1,1x2,2x2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    refs = [r for r in load_refs(args.corpus) if r["subset"] == "real"]
    batch = [args.corpus / r["file"] for r in refs] * args.copies
    configs = [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]
    engines: dict[str, FasterWhisperEngine] = {}
    for jobs, threads in configs:
        engine = FasterWhisperEngine(WhisperConfig(jobs=jobs, threads=threads))
        await engine.warm_up()
        await run_batch(engine, batch[:1])  # first-call costs out of the measurement
        engines[f"{jobs}x{threads}"] = engine

    results: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for number in range(args.rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            audio, wall = await run_batch(engines[name], batch)
            results[name].append(audio / wall)
            print(f"round {number} {name:>4}: {audio:.1f} s of audio in {wall:.1f} s"
                  f" = {audio / wall:.2f} audio-s/s")  # fmt: skip
    baseline = statistics.median(results[names[0]])
    summary: dict[str, Any] = {}
    for name in names:
        median = statistics.median(results[name])
        summary[name] = {
            "jobs": int(name.split("x")[0]),
            "threads": int(name.split("x")[1]),
            "median_throughput": round(median, 3),
            "ratio_to_first": round(median / baseline, 3),
            "rounds": [round(r, 3) for r in results[name]],
        }
    print(json.dumps(summary, indent=2))
    write_results(
        args.out,
        {
            "clips": len(batch),
            "peak_rss_mb_all_engines": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "summary": summary,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
