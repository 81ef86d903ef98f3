"""`transcribe jobs ...`: job maintenance from the command line.

`requeue-failed` replaces the reference's "clear transient cooldowns" SQL
(`DELETE FROM media_pipeline.transcription_failures WHERE status='transient'`): instead of
deleting rows and waiting for a poller, each job gets a forced AudioStored through the outbox
(job row and event in one transaction), so it runs now and the failure record is cleared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs import db
from libs.settings import Settings
from services.cli.replay import UsageError, parse_time, with_embedded_stack
from services.ingest import jobs

# Failed jobs: a transcription_failures row (transient: waiting out a cooldown; permanent:
# given up), or status 'failed' without one. Every column audio_stored_event reads.
FAILED_JOBS = """
SELECT a.id, a.tenant_prefix, a.phone, a.campaign_name, a.recording_id, a.b2_object_key,
       a.content_type, a.size_bytes, a.sha256, a.callback_url, a.model, a.language,
       a.timestamps, a.trace_id, a.status,
       coalesce(f.status, 'permanent') AS failure_status, f.error_code,
       coalesce(f.last_failed_at, a.updated_at) AS failed_at
FROM media_pipeline.audio_files a
LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
WHERE a.status <> 'completed'
  AND (f.audio_file_id IS NOT NULL OR a.status = 'failed')
  AND (coalesce(f.status, 'permanent') = 'transient' OR $1)
  AND ($2::timestamptz IS NULL OR coalesce(f.last_failed_at, a.updated_at) >= $2)
  AND ($3::text IS NULL OR a.tenant_prefix = $3)
ORDER BY failed_at
LIMIT $4
"""


@dataclass(frozen=True, slots=True)
class Requeued:
    audio_file_id: str
    tenant_prefix: str
    failure_status: str
    error_code: str | None
    failed_at: datetime
    requeued: bool


async def requeue_failed(
    pool: asyncpg.Pool,
    *,
    since: datetime | None = None,
    tenant: str | None = None,
    include_permanent: bool = False,
    limit: int = 1000,
    dry_run: bool = False,
) -> list[Requeued]:
    rows = await db.fetch(pool, FAILED_JOBS, include_permanent, since, tenant, limit)
    trace_id = f"requeue-failed-{uuid.uuid4().hex[:12]}"
    out = []
    for row in rows:
        done = False
        if not dry_run:
            async with pool.acquire() as conn:
                # Transient jobs are still 'queued' (waiting for a redelivery): requeue anyway.
                done = await jobs.requeue(conn, row, trace_id=trace_id, even_if_active=True)
        out.append(
            Requeued(
                audio_file_id=str(row["id"]),
                tenant_prefix=row["tenant_prefix"],
                failure_status=row["failure_status"],
                error_code=row["error_code"],
                failed_at=row["failed_at"],
                requeued=done,
            )
        )
    return out


def cmd_requeue_failed(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        since = parse_time(args.since) if args.since else None
    except UsageError as exc:
        print(exc)
        return 2

    async def go() -> list[Requeued]:
        pool = await db.create_pool(settings.require_database_url(), max_size=2)
        try:
            return await requeue_failed(
                pool,
                since=since,
                tenant=args.tenant,
                include_permanent=args.permanent,
                limit=args.limit,
                dry_run=args.dry_run,
            )
        finally:
            await pool.close()

    result = asyncio.run(go())
    for r in result:
        print(
            json.dumps(
                {
                    "audio_file_id": r.audio_file_id,
                    "tenant_prefix": r.tenant_prefix,
                    "failure": r.failure_status,
                    "error_code": r.error_code,
                    "failed_at": r.failed_at.isoformat(),
                    "requeued": r.requeued,
                }
            )
        )
    verb = "would requeue" if args.dry_run else "requeued"
    print(f"{verb} {sum(1 for r in result if r.requeued or args.dry_run)} job(s)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jobs", help="job maintenance")
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    r = jsub.add_parser(
        "requeue-failed",
        help="run failed jobs again now (transient by default; --permanent for all)",
    )
    r.add_argument("--since", help="only failures since 2026-11-24T10:00:00Z or an age like 2h")
    r.add_argument("--tenant", help="only this tenant prefix ('' for the default tenant)")
    r.add_argument("--permanent", action="store_true", help="permanent failures too")
    r.add_argument("--limit", type=int, default=1000)
    r.add_argument("--dry-run", action="store_true", help="list, change nothing")
    r.set_defaults(fn=cmd_requeue_failed)
