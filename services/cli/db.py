"""`transcribe db ...`: schema administration."""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from libs.db import migrate
from libs.settings import Settings
from services.cli.common import with_conn


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> list[migrate.Migration]:
        return await migrate.migrate(conn)

    applied = asyncio.run(with_conn(settings, go))
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print("schema is up to date")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dbp = sub.add_parser("db", help="database administration")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("migrate", help="apply pending migrations").set_defaults(fn=cmd_db_migrate)
