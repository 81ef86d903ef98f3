"""Versioned SQL migrations: files `NNNN_name.sql`, each applied once, in order, in a transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger()

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Serialises concurrent `migrate` runs (several services starting at once).
_LOCK_KEY = 0x7472616E73  # "trans"

CREATE_VERSIONS = """
CREATE SCHEMA IF NOT EXISTS media_pipeline;
CREATE TABLE IF NOT EXISTS media_pipeline.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
APPLIED_VERSIONS = "SELECT version FROM media_pipeline.schema_migrations"
RECORD_VERSION = "INSERT INTO media_pipeline.schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("libs.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations; returns those applied now. Safe to run concurrently."""
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(CREATE_VERSIONS)
        done = {r["version"] for r in await conn.fetch(APPLIED_VERSIONS)}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD_VERSION, migration.version, migration.name)
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
