"""The job lifecycle's database costs (issue #15), on an embedded Postgres:

- listing: `GET /api/media/jobs`'s query (libs.jobs.views.list_jobs), one key with --jobs jobs
  among as many of other keys: the first page and a page deep in the list (keyset pagination
  should cost the same);
- deleting: the tombstone transaction of one job (libs.jobs.deletion.request), which also scans
  the outbox for the job's events, with --outbox rows in it;
- retention: the sweeper's batch (libs.jobs.retention.expire_jobs: one outbox pass per batch)
  deleting expired jobs, jobs per second (objects: a no-op store; S3 is measured elsewhere).

    python -m bench.lifecycle_bench [--jobs 100000] [--outbox 200000] [--expire 2000]

Result: bench/results/lifecycle.json.
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

from embedded.postgres import PostgresServer
from libs import apikeys, db
from libs.jobs import deletion, retention, views
from libs.provision import migrate_database

RESULTS = Path(__file__).resolve().parent / "results" / "lifecycle.json"

INSERT_JOBS = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, phone, campaign_name,
    bucket, b2_object_key, content_type, size_bytes, sha256, created_at, transcript_expires_at)
SELECT gen_random_uuid(), $1, $2, '+14155550000', 'camp', 'b',
       $2 || '/camp/audio/14155550000/' || gen_random_uuid() || '.wav', 'audio/wav', 1, 'x',
       now() - make_interval(secs => g), $4
FROM generate_series(1, $3) AS g
"""
INSERT_OUTBOX = """
INSERT INTO media_pipeline.outbox (event_id, subject, payload, published_at)
SELECT gen_random_uuid(), 'transcribe.audio.stored.x',
       convert_to('{"type":"audio.stored","audio_file_id":"' || gen_random_uuid()
                  || '","tenant":"x","phone":"+14155550000","campaign":"camp"}', 'UTF8'), now()
FROM generate_series(1, $1)
"""


class NoStore:
    async def delete(self, key: str) -> None:
        return None


async def _ms(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


async def main(jobs: int, outbox_rows: int, expire: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with PostgresServer(Path(tmp) / "pg") as pg:
            await migrate_database(pg.dsn)
            pool = await db.create_pool(pg.dsn, min_size=1, max_size=4)
            try:
                async with pool.acquire() as conn:
                    _, mine = await apikeys.create(conn, name="mine", tenant_prefix="mine")
                    _, other = await apikeys.create(conn, name="other", tenant_prefix="other")
                    for key, prefix in ((mine, "mine"), (other, "other")):
                        await conn.execute(INSERT_JOBS, uuid.UUID(key.id), prefix, jobs, None)
                    await conn.execute(INSERT_OUTBOX, outbox_rows)
                    await conn.execute("ANALYZE")
                key_id = uuid.UUID(mine.id)
                first = await views.list_jobs(pool, key_id, views.ListFilter(), limit=51)
                deep_rows = await pool.fetch(
                    "SELECT created_at, id FROM media_pipeline.audio_files WHERE api_key_id = $1 "
                    "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
                    key_id,
                    jobs - 100,
                )
                deep = views.ListFilter(after=(deep_rows[0]["created_at"], deep_rows[0]["id"]))
                assert len(first) == 51
                result: dict[str, Any] = {"jobs_per_key": jobs, "outbox_rows": outbox_rows}
                result["list_first_page_ms"] = await _ms(
                    lambda: views.list_jobs(pool, key_id, views.ListFilter(), limit=51), 50
                )
                result["list_deep_page_ms"] = await _ms(
                    lambda: views.list_jobs(pool, key_id, deep, limit=51), 50
                )
                result["list_failed_filter_ms"] = await _ms(
                    lambda: views.list_jobs(
                        pool, key_id, views.ListFilter(states=("failed",)), limit=51
                    ),
                    20,
                )
                victims = [r["id"] for r in first[:20]]
                pending = iter(victims)

                async def delete_one() -> None:
                    async with pool.acquire() as conn:
                        await deletion.request(
                            conn,
                            next(pending),
                            api_key_id=key_id,
                            requested_by="bench",
                            reason="api",
                        )

                result["delete_one_ms"] = await _ms(delete_one, len(victims))
                await pool.execute(
                    "UPDATE media_pipeline.audio_files SET transcript_expires_at = now() "
                    "WHERE id IN (SELECT id FROM media_pipeline.audio_files WHERE api_key_id = $1 "
                    "AND status <> 'deleted' ORDER BY created_at LIMIT $2)",
                    uuid.UUID(other.id),
                    expire,
                )
                started = time.perf_counter()
                expired = 0
                while n := await retention.expire_jobs(pool, NoStore(), limit=100):
                    expired += n
                elapsed = time.perf_counter() - started
                result["retention_expired"] = expired
                result["retention_jobs_per_s"] = round(expired / elapsed, 1)
            finally:
                await pool.close()
    print(
        f"list (limit 50, {jobs} jobs of the key + {jobs} of another): first page "
        f"{result['list_first_page_ms']} ms, page {jobs - 100} deep {result['list_deep_page_ms']}"
        f" ms, status=failed {result['list_failed_filter_ms']} ms\n"
        f"DELETE transaction with {outbox_rows} outbox rows: {result['delete_one_ms']} ms\n"
        f"retention: {expired} jobs in batches of 100: {result['retention_jobs_per_s']} jobs/s"
    )
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--outbox", type=int, default=200_000)
    parser.add_argument("--expire", type=int, default=2_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.jobs, args.outbox, args.expire))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    cli()
