"""The owner of `media_pipeline.categories` (a key's named rules) and
`media_pipeline.category_matches` (what a job matched, with its evidence), migration 0030.

Matches are written only for a job that is `completed` at that moment, under a share lock on
its row: a DELETE (which locks the row for update and removes the job's matches in its
transaction, `forget`) either waits for the write and then removes it, or has tombstoned the
job first and the write does nothing. So no evidence outlives its job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from libs.categories import rules
from libs.categories.rules import Category, Rule
from libs.contracts import CategoryMatch, Evidence
from libs.db import rows_affected
from libs.errors import Conflict

__all__ = [
    "Category",
    "Stored",
    "delete",
    "for_key",
    "forget",
    "get",
    "matches_for",
    "put",
    "replace_match",
    "save_matches",
]

FOR_KEY = """
SELECT name, rule, created_at, updated_at FROM media_pipeline.categories WHERE api_key_id = $1 ORDER BY name
"""
GET = """
SELECT name, rule, created_at, updated_at FROM media_pipeline.categories WHERE api_key_id = $1 AND name = $2
"""
# Serializes the writes of one key's categories, so the per-key limits hold under concurrency.
LOCK_KEY = "SELECT id FROM media_pipeline.api_keys WHERE id = $1 FOR UPDATE"
TOTALS = """
SELECT count(*) AS categories, coalesce(sum(phrases), 0) AS phrases
FROM media_pipeline.categories WHERE api_key_id = $1 AND name <> $2
"""
UPSERT = """
INSERT INTO media_pipeline.categories (api_key_id, name, rule, phrases)
VALUES ($1, $2, $3, $4)
ON CONFLICT (api_key_id, name) DO UPDATE
SET rule = EXCLUDED.rule, phrases = EXCLUDED.phrases, updated_at = now()
RETURNING name, rule, created_at, updated_at, (xmax = 0) AS created
"""
DELETE = "DELETE FROM media_pipeline.categories WHERE api_key_id = $1 AND name = $2"
# The deleted category's matches on the key's jobs.
DELETE_MATCHES_OF_CATEGORY = """
DELETE FROM media_pipeline.category_matches m
USING media_pipeline.audio_files a
WHERE m.name = $2 AND m.audio_file_id = a.id AND a.api_key_id = $1
"""

# A job's matches are written only while it is completed (see the module's docstring).
LOCK_COMPLETED = """
SELECT status = 'completed' FROM media_pipeline.audio_files WHERE id = $1 FOR SHARE
"""
FORGET = "DELETE FROM media_pipeline.category_matches WHERE audio_file_id = $1"
FORGET_ONE = "DELETE FROM media_pipeline.category_matches WHERE audio_file_id = $1 AND name = $2"
INSERT_MATCH = """
INSERT INTO media_pipeline.category_matches (audio_file_id, name, matches)
VALUES ($1, $2, $3)
ON CONFLICT (audio_file_id, name) DO UPDATE SET matches = EXCLUDED.matches, evaluated_at = now()
"""
MATCHES_FOR = """
SELECT name, matches FROM media_pipeline.category_matches WHERE audio_file_id = $1 ORDER BY name
"""


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """What `put` did: the category as stored, and whether it is new."""

    category: Category
    created: bool


def _category(row: asyncpg.Record) -> Category:
    """A row of FOR_KEY / GET / UPSERT: its rule parsed again (stored rules were checked, so
    this only fails if the table was edited by hand, and then it says where)."""
    return Category(
        name=row["name"],
        rule=rules.parse(row["rule"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def for_key(conn: asyncpg.Connection | asyncpg.Pool, key_id: uuid.UUID) -> list[Category]:
    """The key's categories, by name."""
    return [_category(r) for r in await conn.fetch(FOR_KEY, key_id)]


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, key_id: uuid.UUID, name: str
) -> Category | None:
    row = await conn.fetchrow(GET, key_id, name)
    return None if row is None else _category(row)


async def put(conn: asyncpg.Connection, key_id: uuid.UUID, name: str, rule: Rule) -> Stored:
    """Create or replace the key's category `name`; `Conflict` (nothing written) when the key
    would hold more than MAX_CATEGORIES_PER_KEY categories or MAX_PHRASES_PER_KEY phrases."""
    phrases = rules.phrase_count(rule)
    async with conn.transaction():
        await conn.fetchval(LOCK_KEY, key_id)
        others = await conn.fetchrow(TOTALS, key_id, name)
        if others["categories"] + 1 > rules.MAX_CATEGORIES_PER_KEY:
            raise Conflict(
                f"a key holds at most {rules.MAX_CATEGORIES_PER_KEY} categories",
                code="too_many_categories",
            )
        if others["phrases"] + phrases > rules.MAX_PHRASES_PER_KEY:
            raise Conflict(
                f"a key's categories hold at most {rules.MAX_PHRASES_PER_KEY} phrases"
                f" (the others hold {others['phrases']}, this one {phrases})",
                code="too_many_phrases",
            )
        row = await conn.fetchrow(UPSERT, key_id, name, rules.dump(rule), phrases)
    return Stored(category=_category(row), created=bool(row["created"]))


async def delete(conn: asyncpg.Connection, key_id: uuid.UUID, name: str) -> bool:
    """Remove the key's category and its matches on the key's jobs; False if there was none."""
    async with conn.transaction():
        if not rows_affected(await conn.execute(DELETE, key_id, name)):
            return False
        await conn.execute(DELETE_MATCHES_OF_CATEGORY, key_id, name)
    return True


def _evidence(match: CategoryMatch) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(e) for e in match.matches]


async def save_matches(
    conn: asyncpg.Connection, audio_file_id: uuid.UUID, matches: Sequence[CategoryMatch]
) -> bool:
    """Replace the job's matches (every category) with `matches`; idempotent. False (nothing
    written) when the job is not completed (deleted, requeued, unknown)."""
    async with conn.transaction():
        if not await conn.fetchval(LOCK_COMPLETED, audio_file_id):
            return False
        await conn.execute(FORGET, audio_file_id)
        if matches:
            await conn.executemany(
                INSERT_MATCH, [(audio_file_id, m.name, _evidence(m)) for m in matches]
            )
    return True


async def replace_match(
    conn: asyncpg.Connection,
    audio_file_id: uuid.UUID,
    name: str,
    match: CategoryMatch | None,
) -> bool:
    """Set (or, with None, remove) the job's match of category `name`; the others stay. False
    (nothing written) when the job is not completed."""
    async with conn.transaction():
        if not await conn.fetchval(LOCK_COMPLETED, audio_file_id):
            return False
        if match is None:
            await conn.execute(FORGET_ONE, audio_file_id, name)
        else:
            await conn.execute(INSERT_MATCH, audio_file_id, name, _evidence(match))
    return True


async def matches_for(
    conn: asyncpg.Connection | asyncpg.Pool, audio_file_id: uuid.UUID
) -> tuple[CategoryMatch, ...]:
    """The job's matches, by category name."""
    return tuple(
        CategoryMatch(name=r["name"], matches=msgspec.convert(r["matches"], tuple[Evidence, ...]))
        for r in await conn.fetch(MATCHES_FOR, audio_file_id)
    )


async def forget(conn: asyncpg.Connection, audio_file_id: uuid.UUID) -> None:
    """Remove the job's matches (inside the transaction that deletes or requeues it)."""
    await conn.execute(FORGET, audio_file_id)
