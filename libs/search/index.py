"""Writing and removing a call's rows; re-indexing the completed jobs of before the index.

`write` runs inside the transaction that completes the job (libs/jobs/lifecycle.py), `forget`
inside the ones that delete (libs/jobs/deletion.py, hence retention too) or requeue it
(libs/jobs/requeue.py): the index holds exactly the completed jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from libs.search import configs
from libs.search.rows import IndexedUtterance, metrics, utterances
from libs.transcript import Transcript

# The call row, with the job's owner, campaign and time, and the key's configuration if it set
# one (else the language's, $2). The old utterances of a re-completed job go in the same
# statement; the configuration is remembered for the query side.
UPSERT_CALL = """
WITH job AS (
    SELECT a.id, a.api_key_id, a.campaign_name, a.created_at,
           coalesce(k.config, $2::regconfig) AS config
    FROM media_pipeline.audio_files a
    LEFT JOIN media_pipeline.search_key_configs k ON k.api_key_id = a.api_key_id
    WHERE a.id = $1
), gone AS (
    DELETE FROM media_pipeline.search_utterances WHERE audio_file_id = $1
), known AS (
    INSERT INTO media_pipeline.search_configs (config) SELECT config FROM job
    ON CONFLICT (config) DO NOTHING
)
INSERT INTO media_pipeline.search_calls AS c
    (audio_file_id, api_key_id, campaign_name, created_at, config, duration, talk_ratio,
     silence_share, interruptions, overlap, wpm)
SELECT id, api_key_id, campaign_name, created_at, config, $3, $4, $5, $6, $7, $8 FROM job
ON CONFLICT (audio_file_id) DO UPDATE SET
    api_key_id = EXCLUDED.api_key_id, campaign_name = EXCLUDED.campaign_name,
    created_at = EXCLUDED.created_at, config = EXCLUDED.config, duration = EXCLUDED.duration,
    talk_ratio = EXCLUDED.talk_ratio, silence_share = EXCLUDED.silence_share,
    interruptions = EXCLUDED.interruptions, overlap = EXCLUDED.overlap, wpm = EXCLUDED.wpm,
    indexed_at = now()
RETURNING api_key_id, campaign_name, created_at, config::text AS config
"""
# Every utterance in one statement (arrays in, one row each out). Word timings travel as one
# flat array for the whole call; row k takes its slice [lo, hi] (NULL: no words).
INSERT_UTTERANCES = """
INSERT INTO media_pipeline.search_utterances
    (audio_file_id, seq, api_key_id, campaign_name, created_at, role, speaker, channel, start_s,
     end_s, text, config, word_chars, word_times)
SELECT $1, u.seq, $2, $3, $4, u.role, u.speaker, u.channel, u.start_s, u.end_s, u.text,
       $5::regconfig, ($15::integer[])[u.lo:u.hi], ($16::real[])[u.lo:u.hi]
FROM unnest($6::integer[], $7::text[], $8::text[], $9::smallint[], $10::real[], $11::real[],
            $12::text[], $13::integer[], $14::integer[])
    AS u(seq, role, speaker, channel, start_s, end_s, text, lo, hi)
"""
FORGET = """
WITH gone AS (DELETE FROM media_pipeline.search_utterances WHERE audio_file_id = $1)
DELETE FROM media_pipeline.search_calls WHERE audio_file_id = $1
"""
# Re-indexing: completed jobs after `$1` (by id) without rows (all of them with $3).
TO_REINDEX = """
SELECT a.id, t.b2_transcript_json_key AS json_key, t.updated_at
FROM media_pipeline.audio_files a
JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.status = 'completed' AND a.id > $1
  AND ($3 OR NOT EXISTS (
      SELECT 1 FROM media_pipeline.search_calls c WHERE c.audio_file_id = a.id))
ORDER BY a.id
LIMIT $2
"""
# The job is still completed with the transcript that was read (a completion, rerun or
# deletion since then wins); the row lock keeps it so until the rows are written.
LOCK_UNCHANGED = """
SELECT 1 FROM media_pipeline.audio_files a
JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
WHERE a.id = $1 AND a.status = 'completed' AND t.updated_at = $2
  AND t.b2_transcript_json_key = $3
FOR UPDATE OF a
"""


class CallOwner(msgspec.Struct, frozen=True):
    api_key_id: uuid.UUID
    campaign_name: str
    created_at: datetime
    config: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallOwner:
        return cls(row["api_key_id"], row["campaign_name"], row["created_at"], str(row["config"]))


async def write(conn: asyncpg.Connection, job_id: uuid.UUID, transcript: Transcript) -> int:
    """Index the (redacted) transcript of a completed job, replacing what it had: run inside
    the transaction that completes it. Returns the number of utterance rows."""
    m = metrics(transcript)
    row = await conn.fetchrow(
        UPSERT_CALL,
        job_id,
        configs.for_language(transcript.language),
        m.duration,
        m.talk_ratio,
        m.silence_share,
        m.interruptions,
        m.overlap,
        m.wpm,
    )
    if row is None:  # no such job: nothing to index
        return 0
    owner = CallOwner.from_row(row)
    rows = utterances(transcript)
    if rows:
        chars: list[int] = []
        times: list[float] = []
        lo: list[int | None] = []
        hi: list[int | None] = []
        for u in rows:
            if u.word_chars is None or u.word_times is None:
                lo.append(None)
                hi.append(None)
                continue
            lo.append(len(chars) + 1)
            chars += u.word_chars
            times += u.word_times
            hi.append(len(chars))
        await conn.execute(
            INSERT_UTTERANCES,
            job_id,
            owner.api_key_id,
            owner.campaign_name,
            owner.created_at,
            owner.config,
            [u.seq for u in rows],
            [u.role for u in rows],
            [u.speaker for u in rows],
            [u.channel for u in rows],
            [u.start for u in rows],
            [u.end for u in rows],
            [u.text for u in rows],
            lo,
            hi,
            chars,
            times,
        )
    return len(rows)


async def forget(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    """Remove the job's rows (deletion, retention, requeue): run inside their transaction."""
    await conn.execute(FORGET, job_id)


Fetch = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class ReindexBatch:
    indexed: int
    skipped: int
    # The id to continue after (None: nothing was left).
    last_id: uuid.UUID | None


async def reindex_batch(
    pool: asyncpg.Pool,
    fetch: Fetch,
    *,
    after: uuid.UUID,
    limit: int,
    full: bool = False,
) -> ReindexBatch:
    """Index up to `limit` completed jobs after `after` (by id) from their stored JSON
    transcripts (the redacted ones). Resumable (jobs already indexed are left unless `full`)
    and safe while the system runs: each job is written in its own short transaction, and
    only if it is still completed with the transcript that was read."""
    rows = await pool.fetch(TO_REINDEX, after, limit, full)
    indexed = skipped = 0
    for row in rows:
        try:
            data = await fetch(row["json_key"])
            transcript = msgspec.json.decode(data, type=Transcript)
        except (LookupError, msgspec.DecodeError, msgspec.ValidationError):
            skipped += 1
            continue
        async with pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(LOCK_UNCHANGED, row["id"], row["updated_at"], row["json_key"]):
                await write(conn, row["id"], transcript)
                indexed += 1
            else:
                skipped += 1
    return ReindexBatch(indexed, skipped, rows[-1]["id"] if rows else None)


# What the index holds of some calls, for readers that re-evaluate them without their stored
# transcripts (categories apply, issue #21): the calls indexed, and their utterances in order.
INDEXED = """
SELECT audio_file_id FROM media_pipeline.search_calls WHERE audio_file_id = ANY($1::uuid[])
"""
UTTERANCES_OF = """
SELECT audio_file_id, seq, role, speaker, channel, start_s, end_s, text
FROM media_pipeline.search_utterances WHERE audio_file_id = ANY($1::uuid[])
ORDER BY audio_file_id, seq
"""


async def utterances_of(
    conn: asyncpg.Connection | asyncpg.Pool, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[IndexedUtterance]]:
    """The indexed utterances of each of `job_ids` that is in the index (a job not indexed is
    absent; one indexed without text maps to []), in order, without word timings. Times are
    stored as `real`: they come back rounded to the millisecond."""
    ids = list(job_ids)
    out: dict[uuid.UUID, list[IndexedUtterance]] = {
        r["audio_file_id"]: [] for r in await conn.fetch(INDEXED, ids)
    }
    for r in await conn.fetch(UTTERANCES_OF, list(out)):
        out[r["audio_file_id"]].append(
            IndexedUtterance(
                seq=r["seq"],
                role=r["role"],
                speaker=r["speaker"],
                channel=r["channel"],
                start=round(r["start_s"], 3),
                end=round(r["end_s"], 3),
                text=r["text"],
            )
        )
    return out
