"""The cost of completing a job (libs.jobs.lifecycle.complete: the transcription row, the
failure and chunk cleanup and the TranscriptReady outbox row in one statement), on an embedded
Postgres, for a short and a long transcript; median of --repeat forced completions.

    python -m bench.completion_bench [--repeat 200]

With OLD_LIFECYCLE (a lifecycle.py of an earlier commit, e.g.
`git show f30a9b7:libs/jobs/lifecycle.py > /tmp/old_lifecycle.py`) present, its `complete`
(19 positional parameters) is measured beside it. Result: bench/results/completion.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.report import write_results
from embedded.postgres import PostgresServer
from libs import apikeys, db
from libs.contracts import TranscriptKeys
from libs.jobs import lifecycle
from libs.provision import migrate_database
from libs.transcript import EngineMetadata, Segment, Transcript

RESULTS = Path(__file__).resolve().parent / "results" / "completion.json"
OLD_LIFECYCLE = Path("/tmp/old_lifecycle.py")
INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, phone, campaign_name,
    bucket, b2_object_key, content_type, size_bytes, sha256, status)
VALUES ($1, $2, 'bench', '+14155550000', 'camp', 'b', 'bench/camp/audio/x.wav', 'audio/wav', 1,
        'x', 'processing')
"""
KEYS = TranscriptKeys(json="k.json", txt="k.txt", srt="k.srt", vtt="k.vtt")


def transcript(words: int) -> Transcript:
    text = " ".join(f"word{i}" for i in range(words))
    segments = tuple(
        Segment(id=i, start=i * 5.0, end=i * 5.0 + 5, text=text[:40]) for i in range(words // 12)
    )
    return Transcript(
        text=text,
        language="en",
        duration=words / 2.5,
        segments=segments,
        model="whisper-1",
        engine="openai",
        engine_metadata=EngineMetadata(raw_response={"text": text}),
    )


def load_old() -> ModuleType | None:
    if not OLD_LIFECYCLE.exists():
        return None
    spec = importlib.util.spec_from_file_location("old_lifecycle", OLD_LIFECYCLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def median_ms(module: Any, pool: Any, job: Any, t: Transcript, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        ready = await module.complete(pool, job, t, KEYS, force=True, trace_id=None)
        samples.append((time.perf_counter() - started) * 1000)
        assert ready is not None
    return round(statistics.median(samples), 3)


async def main(repeat: int) -> dict[str, Any]:
    old = load_old()
    with tempfile.TemporaryDirectory() as tmp:
        async with PostgresServer(Path(tmp) / "pg") as pg:
            await migrate_database(pg.dsn)
            pool = await db.create_pool(pg.dsn, min_size=1, max_size=2)
            try:
                async with pool.acquire() as conn:
                    _, key = await apikeys.create(conn, name="bench", tenant_prefix="bench")
                    job_id = uuid.uuid4()
                    await conn.execute(INSERT_JOB, job_id, uuid.UUID(str(key.id)))
                job = await lifecycle.load_job(pool, str(job_id))
                results: dict[str, Any] = {"repeat": repeat}
                for name, words in (("short", 150), ("long", 30000)):
                    t = transcript(words)
                    results[f"{name}_words"] = words
                    for label, module in (("named", lifecycle), ("positional", old)):
                        if module is not None:
                            ms = await median_ms(module, pool, job, t, repeat)
                            results[f"{name}_{label}_ms"] = ms
                            print(f"{name} ({words} words), {label}: {ms} ms")
            finally:
                await pool.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    write_results(RESULTS, asyncio.run(main(parser.parse_args().repeat)))
