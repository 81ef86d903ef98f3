"""`transcribe deadletters ...`: run the capture service; list, show and requeue dead letters.

The command line is the operator's: it sees every dead letter (the API shows a key only its
own jobs' ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import msgspec

from libs import bus, db
from libs.deadletters import records
from libs.deadletters.requeue import NotRequeueable, requeue
from libs.jobs.requeue import AudioExpired
from libs.settings import Settings
from services.cli.common import run_service
from services.cli.replay import UsageError, parse_time, with_embedded_stack

T = TypeVar("T")


async def _with_pool(settings: Settings, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    pool = await db.create_pool(settings.require_database_url(), max_size=2)
    try:
        return await fn(pool)
    finally:
        await pool.close()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    from services.deadletters.main import run

    return run_service(run, settings)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        since = parse_time(args.since) if args.since else None
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2

    async def go(pool: asyncpg.Pool) -> list[dict[str, Any]]:
        rows = await records.list_(
            pool,
            api_key_id=None,
            since=since,
            open_only=args.open,
            audio_file_id=None,
            limit=args.limit,
        )
        return [msgspec.to_builtins(records.DeadLetter.from_row(r)) for r in rows]

    for item in asyncio.run(_with_pool(settings, go)):
        item.pop("event", None)
        print(json.dumps(item))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)

    async def go(pool: asyncpg.Pool) -> dict[str, Any] | None:
        row = await records.get(pool, args.id, api_key_id=None)
        return None if row is None else msgspec.to_builtins(records.DeadLetter.from_row(row))

    item = asyncio.run(_with_pool(settings, go))
    if item is None:
        print(f"no dead letter {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(item, indent=2))
    return 0


async def requeue_many(settings: Settings, ids: list[int], *, all_open: bool) -> list[str]:
    async def go(pool: asyncpg.Pool) -> list[str]:
        nc = await bus.connect(settings.nats_servers, name="deadletters-cli")
        try:
            js = nc.jetstream()
            if all_open:
                rows = await records.list_(
                    pool,
                    api_key_id=None,
                    since=None,
                    open_only=True,
                    audio_file_id=None,
                    limit=10000,
                )
            else:
                rows = [r for i in ids if (r := await records.get(pool, i, api_key_id=None))]
            out = []
            for row in rows:
                try:
                    out.append(f"{row['id']}: {await requeue(pool, js, row)}")
                except (NotRequeueable, AudioExpired) as exc:
                    out.append(f"{row['id']}: not requeueable: {exc}")
            return out
        finally:
            await nc.drain()

    return await _with_pool(settings, go)


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    if not args.ids and not args.all:
        print("give dead-letter ids or --all", file=sys.stderr)
        return 2
    for line in asyncio.run(requeue_many(settings, args.ids, all_open=args.all)):
        print(line)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deadletters", help="dead letters: capture service, list, requeue")
    dsub = p.add_subparsers(dest="deadletters_command", required=True)
    dsub.add_parser("run", help="run the capture service (and ops gauges)").set_defaults(fn=cmd_run)
    ls = dsub.add_parser("list", help="recent dead letters, newest first")
    ls.add_argument("--since", help="2026-11-24T10:00:00Z or an age like 2h")
    ls.add_argument("--open", action="store_true", help="only those not requeued yet")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(fn=cmd_list)
    show = dsub.add_parser("show", help="one dead letter with its original event")
    show.add_argument("id", type=int)
    show.set_defaults(fn=cmd_show)
    rq = dsub.add_parser("requeue", help="put dead letters' work back")
    rq.add_argument("ids", nargs="*", type=int)
    rq.add_argument("--all", action="store_true", help="every dead letter not requeued yet")
    rq.set_defaults(fn=cmd_requeue)
