"""Erasing deleted jobs' events from the stream (libs/outbox/published.py), on an embedded
nats-server and Postgres:

- relay: outbox rows published per second by OutboxRelay, which now also records each event's
  (stream, seq) in published_events in its transaction;
- record: the cost of that recording alone, per batch of 200 events;
- sweep: what the sweeper pays every 15 s with --rows rows of live jobs in published_events and
  nothing due (the catch-up of recent deleted jobs, the erasure claim, the MaxAge purge);
- erase: messages erased per second (JetStream delete with erase, then the rows dropped).

    python -m bench.stream_erasure_bench [--events 5000] [--rows 200000]

Result: bench/results/stream_erasure.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from libs import db, outbox
from libs.bus import ensure_stream, jetstream
from libs.contracts import JobProgress, new_event_id, streams, subjects, utcnow
from libs.outbox import OutboxRelay, published
from libs.provision import migrate_database

RESULTS = Path(__file__).resolve().parent / "results" / "stream_erasure.json"

FILL = """
INSERT INTO media_pipeline.published_events (stream, seq, audio_file_id, published_at)
SELECT 'FILL', g, gen_random_uuid(), now() - make_interval(secs => g)
FROM generate_series(1, $1) AS g
"""


def _event(job: str) -> JobProgress:
    return JobProgress(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=job,
        tenant="bench",
        stage="transcribing",
        fraction=0.5,
    )


async def _enqueue(pool: Any, jobs: list[str]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for job in jobs:
            await outbox.enqueue(conn, _event(job), subjects.job_progress("bench"))


async def main(events: int, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            NatsServer(Path(tmp) / "nats") as server,
            PostgresServer(Path(tmp) / "pg") as pg,
        ):
            await migrate_database(pg.dsn)
            pool = await db.create_pool(pg.dsn)
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_stream(js, streams.stream_spec())
            try:
                jobs = [str(uuid.uuid4()) for _ in range(events)]
                await _enqueue(pool, jobs)
                started = time.perf_counter()
                published_count = await OutboxRelay(pool, js).run_until_idle()
                relay_s = time.perf_counter() - started

                batch = [(subjects.job_progress("bench"), outbox.event_row(_event(j), "")[2])
                         for j in jobs[:200]]  # fmt: skip
                positions = [("BENCH", 10_000_000 + i) for i in range(200)]
                samples = []
                for round_ in range(20):
                    moved = [(s, q + round_ * 1000) for s, q in positions]
                    async with pool.acquire() as conn, conn.transaction():
                        t0 = time.perf_counter()
                        await published.record(conn, batch, moved)
                        samples.append((time.perf_counter() - t0) * 1000)
                record_ms = statistics.median(samples)

                await pool.execute(FILL, rows)
                await pool.execute("ANALYZE media_pipeline.published_events")
                sweeps = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    await published.sweep(
                        pool, jetstream.StreamEraser(js), batch=100, max_age_days=30
                    )
                    sweeps.append((time.perf_counter() - t0) * 1000)
                sweep_ms = statistics.median(sweeps)

                await pool.execute(
                    "UPDATE media_pipeline.published_events SET erase_at = now() WHERE stream = $1",
                    streams.STREAM_NAME,
                )
                t0 = time.perf_counter()
                run = await published.sweep(
                    pool, jetstream.StreamEraser(js), batch=100, max_age_days=30
                )
                erase_s = time.perf_counter() - t0
            finally:
                await nc.close()
                await pool.close()
    return {
        "events": events,
        "relay_events_per_s": round(published_count / relay_s),
        "record_ms_per_200": round(record_ms, 2),
        "rows_in_table": rows,
        "sweep_idle_ms": round(sweep_ms, 2),
        "erased": run.erased,
        "erased_per_s": round(run.erased / erase_s),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.events, args.rows))
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
