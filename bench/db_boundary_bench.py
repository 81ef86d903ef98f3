"""Cost of the database boundary: libs.db's translating pool against asyncpg's own pool.

Every query through libs.db goes through a wrapper that turns driver connection errors into
DatabaseUnavailable. This bench runs the same statements through both pools, interleaved in
rounds on one embedded Postgres, and prints the median client CPU per statement and the ratio.

    python -m bench.db_boundary_bench [--rounds 7] [--n 3000]

Result: bench/results/db_boundary.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from embedded.postgres import PostgresServer
from libs import db

RESULTS = Path(__file__).resolve().parent / "results" / "db_boundary.json"


async def _no_reset(conn: asyncpg.Connection) -> None:
    """libs.db's pools skip asyncpg's reset query on release; the raw pool must too, so that
    only the translation differs."""


async def _fetchval(pool: Any) -> None:
    await pool.fetchval("SELECT 1")


async def _acquire_transaction(pool: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        await conn.execute("SELECT 2")


async def _cpu_per_call(pool: Any, op: Callable[[Any], Awaitable[None]], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        await op(pool)
    return (time.process_time() - started) / n * 1e6  # µs of this process's CPU per call


async def main(rounds: int, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with PostgresServer(Path(tmp) / "pg") as pg:
            raw = await asyncpg.create_pool(pg.dsn, min_size=1, max_size=1, reset=_no_reset)
            ours = await db.create_pool(pg.dsn, min_size=1, max_size=1)
            result: dict[str, Any] = {"rounds": rounds, "calls_per_round": n}
            try:
                for name, op in (("fetchval", _fetchval), ("transaction", _acquire_transaction)):
                    samples: dict[str, list[float]] = {"asyncpg": [], "libs.db": []}
                    await _cpu_per_call(raw, op, n // 10)  # warm both
                    await _cpu_per_call(ours, op, n // 10)
                    for _ in range(rounds):
                        samples["asyncpg"].append(await _cpu_per_call(raw, op, n))
                        samples["libs.db"].append(await _cpu_per_call(ours, op, n))
                    raw_us = statistics.median(samples["asyncpg"])
                    ours_us = statistics.median(samples["libs.db"])
                    result[name] = {
                        "asyncpg_us": round(raw_us, 1),
                        "libs_db_us": round(ours_us, 1),
                        "ratio": round(ours_us / raw_us, 3),
                        "samples": samples,
                    }
                    print(
                        f"{name:12s} client CPU per call: asyncpg {raw_us:6.1f} µs, "
                        f"libs.db {ours_us:6.1f} µs, ratio {ours_us / raw_us:.3f} "
                        f"(median of {rounds} rounds of {n})"
                    )
            finally:
                await raw.close()
                await ours.close()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    out = asyncio.run(main(args.rounds, args.n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")
