"""A failure storm against the notification path, on an embedded Postgres: N failed jobs of a key
with an e-mail rule on `failed`; what it costs to record each event for the rule (the notifier's
per-event work: the job's facts and the unique insert, libs.notifications.items.record), and to
turn all N waiting events into ONE digest message on the delivery queue (items.flush_rule).

    python -m bench.notify_digest_bench [--jobs 500]

Result: bench/results/notify_digest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.report import write_results
from embedded.postgres import PostgresServer
from libs import apikeys, db
from libs.contracts import TranscriptionFailed, new_event_id, utcnow
from libs.notifications import events, items, rules
from libs.provision import migrate_database

RESULTS = Path(__file__).resolve().parent / "results" / "notify_digest.json"
INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, phone, campaign_name,
    bucket, b2_object_key, content_type, size_bytes, sha256, status)
VALUES ($1, $2, 'bench', '+14155550000', 'storm', 'b',
        'bench/storm/audio/' || $1::uuid::text || '.wav', 'audio/wav', 1, 'x', 'failed')
"""


async def main(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with PostgresServer(Path(tmp) / "pg") as pg:
            await migrate_database(pg.dsn)
            pool = await db.create_pool(pg.dsn, min_size=1, max_size=4)
            try:
                async with pool.acquire() as conn:
                    _, key = await apikeys.create(conn, name="bench", tenant_prefix="bench")
                key_id = uuid.UUID(str(key.id))
                rule = await rules.create(
                    pool,
                    key_id,
                    rules.NewRule(events=["failed"], emails=["ops@example.com"]).checked(""),
                )
                ids = [uuid.uuid4() for _ in range(jobs)]
                for job_id in ids:
                    await pool.execute(INSERT_JOB, job_id, key_id)
                samples = []
                for job_id in ids:
                    event = TranscriptionFailed(
                        event_id=new_event_id(),
                        occurred_at=utcnow(),
                        audio_file_id=str(job_id),
                        tenant="bench",
                        error_code="engine_unavailable",
                        detail="the engine answered 503 five times",
                        attempts=10,
                        permanent=True,
                    )
                    started = time.perf_counter()
                    job = await items.job_facts(pool, job_id)
                    assert job is not None
                    item = events.item_for(event, job)
                    assert item is not None
                    assert await items.record(pool, job, event.event_id, item) == 1
                    samples.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                delivery_id = await items.flush_rule(
                    pool, uuid.UUID(rule.id), interval=600, public_base_url="https://gw"
                )
                flush_ms = (time.perf_counter() - started) * 1000
                assert delivery_id is not None
                size = await pool.fetchval(
                    "SELECT octet_length(payload) FROM media_pipeline.webhook_deliveries"
                    " WHERE id = $1",
                    delivery_id,
                )
                messages = await pool.fetchval(
                    "SELECT count(*) FROM media_pipeline.webhook_deliveries WHERE rule_id = $1",
                    uuid.UUID(rule.id),
                )
            finally:
                await pool.close()
    results = {
        "jobs": jobs,
        "record_median_ms": round(statistics.median(samples), 3),
        "record_p95_ms": round(sorted(samples)[int(len(samples) * 0.95) - 1], 3),
        "flush_one_digest_ms": round(flush_ms, 1),
        "digest_bytes": size,
        "messages": messages,
    }
    for k, v in results.items():
        print(f"{k}: {v}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    write_results(RESULTS, asyncio.run(main(parser.parse_args().jobs)))
