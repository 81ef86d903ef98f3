"""Claims on de-duplication keys, taken before a submission downloads anything.

Two identical submissions (same tenant + URL, or same Idempotency-Key) racing on any number of
ingest replicas: the first claims the keys and downloads; the others wait until its job row
appears and return it. So a duplicate never downloads twice, and never writes a second object.

Every submission also holds a claim on its own job id while it writes its object, naming the
object (its key without the extension, which is only known after sniffing). A claim is removed
in the transaction that inserts the job row, or after the object was deleted on failure. A claim
that outlives its expiry belongs to a process that died mid-submit: the sweep deletes the object
it may have written (unless a job row points at it) and then the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from libs.audio.sniff import SUPPORTED
from libs.blobstore import BlobStore, BlobStoreUnavailable
from libs.db import DatabaseUnavailable

log = structlog.get_logger()

# One statement, so the claim of several keys is atomic without a transaction block.
CLAIM = """
INSERT INTO media_pipeline.ingest_claims
    (api_key_id, dedup_key, audio_file_id, object_stem, expires_at)
SELECT $1, k, $2, $3, clock_timestamp() + make_interval(secs => $4)
FROM unnest($5::text[]) AS k
ON CONFLICT (api_key_id, dedup_key) DO NOTHING
RETURNING dedup_key
"""
RELEASE = "DELETE FROM media_pipeline.ingest_claims WHERE audio_file_id = $1"
# The owner's heartbeat: a claim stays short-lived, so one left by a dead process (or by a
# submission that could not reach Postgres to release it) stops blocking duplicates quickly.
EXTEND = """
UPDATE media_pipeline.ingest_claims SET expires_at = clock_timestamp() + make_interval(secs => $2)
WHERE audio_file_id = $1
"""
# Hold on failure paths where the object could not be deleted: the sweep retries soon.
EXPIRE_NOW = """
UPDATE media_pipeline.ingest_claims SET expires_at = clock_timestamp() WHERE audio_file_id = $1
"""
HOLDERS = """
SELECT dedup_key, audio_file_id, expires_at < clock_timestamp() AS expired
FROM media_pipeline.ingest_claims WHERE api_key_id = $1 AND dedup_key = ANY($2::text[])
"""
EXPIRED = """
SELECT DISTINCT audio_file_id FROM media_pipeline.ingest_claims
WHERE expires_at < clock_timestamp() LIMIT $1
"""
# Taken inside the sweep's transaction: the row lock makes a still-running owner's commit wait,
# and then find its claim gone (ClaimLost), so a job row never points at a swept object.
TAKE_EXPIRED = """
DELETE FROM media_pipeline.ingest_claims
WHERE audio_file_id = $1 AND expires_at < clock_timestamp()
RETURNING object_stem
"""
HAS_JOB = "SELECT EXISTS (SELECT 1 FROM media_pipeline.audio_files WHERE id = $1)"


class ClaimLost(RuntimeError):
    """The submission outlived its claim and the sweep cleared it: its object is gone."""


def dedup_keys(*, prefix: str, url_sha1: str | None, idempotency_key: str | None) -> list[str]:
    keys = []
    if idempotency_key is not None:
        keys.append(f"idem:{idempotency_key}")
    if url_sha1 is not None:
        keys.append(f"url:{prefix}:{url_sha1}")
    return keys


@dataclass(frozen=True, slots=True)
class Holder:
    dedup_key: str
    audio_file_id: uuid.UUID
    expired: bool


async def claim(
    pool: asyncpg.Pool,
    *,
    api_key_id: uuid.UUID,
    audio_file_id: uuid.UUID,
    object_stem: str,
    keys: list[str],
    ttl_seconds: float,
) -> bool:
    """Claim `keys` (plus the job's own key) for this submission; False if any is taken."""
    wanted = [f"job:{audio_file_id}", *keys]
    got = await pool.fetch(
        CLAIM, api_key_id, audio_file_id, object_stem, float(ttl_seconds), wanted
    )
    if len(got) == len(wanted):
        return True
    if got:
        await pool.execute(RELEASE, audio_file_id)
    return False


async def holders(pool: asyncpg.Pool, api_key_id: uuid.UUID, keys: list[str]) -> list[Holder]:
    rows = await pool.fetch(HOLDERS, api_key_id, keys)
    return [Holder(r["dedup_key"], r["audio_file_id"], r["expired"]) for r in rows]


async def release(conn: asyncpg.Connection | asyncpg.Pool, audio_file_id: uuid.UUID) -> None:
    await conn.execute(RELEASE, audio_file_id)


async def keep_alive(pool: asyncpg.Pool, audio_file_id: uuid.UUID, ttl_seconds: float) -> None:
    """Extend the claims every third of their lifetime, until cancelled."""
    while True:
        await asyncio.sleep(max(ttl_seconds / 3, 0.1))
        try:
            await pool.execute(EXTEND, audio_file_id, float(ttl_seconds))
        except DatabaseUnavailable as exc:
            # If Postgres stays away past the expiry, the commit finds the claim gone (ClaimLost).
            log.warning("ingest_claim_heartbeat_failed", error=str(exc))


async def expire_now(pool: asyncpg.Pool, audio_file_id: uuid.UUID) -> None:
    await pool.execute(EXPIRE_NOW, audio_file_id)


def object_keys(stem: str) -> list[str]:
    return sorted({f"{stem}.{fmt.ext}" for fmt in SUPPORTED})


async def sweep(pool: asyncpg.Pool, store: BlobStore, *, limit: int = 100) -> int:
    """Delete what expired claims may have left in storage, then the claims. Returns how many
    submissions were cleared. A storage error rolls back, leaving the claim for the next sweep."""
    cleared = 0
    for row in await pool.fetch(EXPIRED, limit):
        file_id = row["audio_file_id"]
        async with pool.acquire() as conn, conn.transaction():
            stem = await conn.fetchval(TAKE_EXPIRED, file_id)
            if stem is None:
                continue
            if not await conn.fetchval(HAS_JOB, file_id):
                # The job row never committed: whatever object was written is an orphan.
                for key in object_keys(stem):
                    await store.delete(key)
        cleared += 1
        log.info("ingest_claim_swept", audio_file_id=str(file_id))
    return cleared


_SWEEP_ERRORS: tuple[type[BaseException], ...] = (BlobStoreUnavailable, DatabaseUnavailable)


async def run_sweeper(
    pool: asyncpg.Pool, store: BlobStore, stop: asyncio.Event, *, interval: float = 30.0
) -> None:
    """Sweep expired claims until `stop`; outages are logged and retried on the next round."""
    while not stop.is_set():
        try:
            await sweep(pool, store)
        except _SWEEP_ERRORS as exc:
            log.warning("ingest_claim_sweep_failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
