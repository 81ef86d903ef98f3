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

from libs import db
from libs.jobs.requeue import Requeued, requeue_failed
from libs.settings import Settings
from services.cli import client
from services.cli.replay import UsageError, parse_time, with_embedded_stack


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
    p = sub.add_parser(
        "jobs", help="your jobs on a gateway (list, show, delete); operator maintenance"
    )
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
    client.register_jobs(jsub)
