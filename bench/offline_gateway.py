"""The offline engine through the whole gateway, beside the same engine called directly.

    python -m bench.offline_gateway [--corpus DIR] [--rounds 2]

--corpus DIR: a corpus directory (`refs.tsv`, `<clip>.wav`, `tel/<clip>.wav`); default
tests/fixtures/speech, the three clips the repository carries. The published numbers come from
the full speech-dev corpus (docs/benchmarks.md, "The speech corpus").

On the speech-dev corpus (real human speech, 16 kHz and the telephone copies in `tel/`):

* engine: `FasterWhisperEngine.transcribe()` on every clip, one after the other, in this
  process (libs.audio decoding included, the model loaded before timing starts);
* gateway: `transcribe up` (the embedded stack: nats-server, Postgres, SeaweedFS, API,
  transcriber, notifier) in a subprocess; every clip submitted by upload at once, then the
  status endpoint polled until every job completed, the transcript read from it.

Each round runs both, engine first, on the same batch, so the ratio compares like with like on
a shared machine. Throughput is audio seconds per wall second over the whole batch (gateway:
first submit to last completion); WER is corpus-level with bench.offline_wer's normalisation.
Results: bench/results/offline_gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.offline_wer import DEFAULT_CORPUS, edit_distance, load_refs, normalise
from bench.report import write_results
from services.transcriber.engines.base import EngineOptions
from services.transcriber.engines.whisper import FasterWhisperEngine
from tests.acceptance.up import running_up

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "offline_gateway.json"


def clips(corpus: Path, band: str, refs: list[dict[str, str]]) -> list[tuple[Path, str]]:
    chosen = [r for r in refs if r["subset"] == "real"]
    base = corpus if band == "16k" else corpus / "tel"
    return [(base / r["file"], r["reference"]) for r in chosen]


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = words = 0
    for reference, hypothesis in pairs:
        ref = normalise(reference)
        errors += edit_distance(ref, normalise(hypothesis))
        words += len(ref)
    return errors / words


async def engine_alone(
    engine: FasterWhisperEngine, batch: list[tuple[Path, str]]
) -> dict[str, Any]:
    pairs: list[tuple[str, str]] = []
    audio = 0.0
    started = time.perf_counter()
    for path, reference in batch:
        transcript = await engine.transcribe(path, EngineOptions(timestamps="segment"))
        pairs.append((reference, transcript.text))
        audio += transcript.duration
    wall = time.perf_counter() - started
    return {
        "wall_seconds": round(wall, 3),
        "audio_seconds": round(audio, 3),
        "throughput": round(audio / wall, 3),
        "wer": round(wer(pairs), 4),
    }


async def through_gateway(
    base_url: str, key: str, batch: list[tuple[Path, str]], durations: dict[Path, float]
) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    async with aiohttp.ClientSession(base_url=base_url, headers=headers) as http:
        started = time.perf_counter()

        async def submit(path: Path) -> str:
            form = aiohttp.FormData()
            form.add_field("file", path.read_bytes(), filename=path.name)
            async with http.post("/api/media/transcribe", data=form) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"submit {path.name}: {resp.status} {body}")
                return str(body["audio_file_id"])

        ids = await asyncio.gather(*(submit(path) for path, _ in batch))
        texts: dict[str, str] = {}
        while len(texts) < len(ids):
            # One status request at a time, for the oldest job not seen completed (the
            # transcriber takes them in order): polling every job would load the gateway with
            # the bench's own requests, on the cores the engine needs.
            for job_id in ids:
                if job_id in texts:
                    continue
                async with http.get(f"/api/media/status/{job_id}") as resp:
                    body = await resp.json()
                if body.get("status") == "failed":
                    raise RuntimeError(f"job {job_id} failed: {body}")
                if body.get("status") != "completed":
                    break
                texts[job_id] = body["transcript"]
            else:
                continue
            await asyncio.sleep(0.1)
        wall = time.perf_counter() - started
    audio = sum(durations[path] for path, _ in batch)
    pairs = [(reference, texts[job_id]) for (_, reference), job_id in zip(batch, ids, strict=True)]
    return {
        "wall_seconds": round(wall, 3),
        "audio_seconds": round(audio, 3),
        "throughput": round(audio / wall, 3),
        "wer": round(wer(pairs), 4),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    refs = load_refs(args.corpus)
    engine = FasterWhisperEngine()
    await engine.warm_up()
    bands = {band: clips(args.corpus, band, refs) for band in ("16k", "tel")}
    durations: dict[Path, float] = {}
    for batch in bands.values():
        for path, _ in batch:  # warm the decoder and learn every clip's length
            durations[path] = (await engine.transcribe(path, EngineOptions())).duration

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-offline-gateway-") as tmp:
        argv: list[str | Path] = [sys.executable, "-c", "from services.cli import main; main()"]
        env = {"OPENAI_API_KEY": "", "LOG_LEVEL": "warning", "VIRTUAL_ENV": sys.prefix}
        home = Path(tmp) / "home"
        home.mkdir()
        async with running_up([*argv, "up"], home=home, cwd=REPO_ROOT, env=env) as up:
            for number in range(args.rounds):
                for band, batch in bands.items():
                    alone = await engine_alone(engine, batch)
                    gateway = await through_gateway(up.base_url, up.api_key, batch, durations)
                    row = {
                        "round": number,
                        "band": band,
                        "clips": len(batch),
                        "engine": alone,
                        "gateway": gateway,
                        "throughput_ratio": round(gateway["throughput"] / alone["throughput"], 3),
                    }
                    rounds.append(row)
                    print(
                        f"round {number} {band:>3}: {len(batch)} clips,"
                        f" {alone['audio_seconds']:.1f} s of audio |"
                        f" engine {alone['throughput']:.2f} audio-s/s WER {alone['wer']:.1%} |"
                        f" gateway {gateway['throughput']:.2f} audio-s/s WER {gateway['wer']:.1%}"
                        f" | ratio {row['throughput_ratio']:.2f}"
                    )
    summary = {
        band: {
            "median_throughput_ratio": statistics.median(
                r["throughput_ratio"] for r in rounds if r["band"] == band
            ),
            "gateway_wer": statistics.median(
                r["gateway"]["wer"] for r in rounds if r["band"] == band
            ),
            "engine_wer": statistics.median(
                r["engine"]["wer"] for r in rounds if r["band"] == band
            ),
        }
        for band in bands
    }
    print(json.dumps(summary, indent=2))
    write_results(
        args.out,
        {
            "summary": summary,
            "rounds": rounds,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
