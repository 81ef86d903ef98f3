"""Re-evaluating one category on a key's past calls without transcribing them again: each
completed job's redacted utterances come from the search index (libs.search, the rows a live
evaluation sees too), its conversation metrics and redaction counts from its transcription
(libs.jobs.views); the category's match is replaced (`store.replace_match`).

Batched (BATCH jobs per read, each job written in its own short transaction, so a long apply
never holds locks) and bounded (at most MAX_CALLS jobs per request, newest first; `after`
says where to go on when that bound was reached). A job completed before the search index
existed and not re-indexed yet (`transcribe search reindex`) is `skipped`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from libs.categories.call import Call, Utterance
from libs.categories.evaluate import evaluate
from libs.categories.rules import Category
from libs.categories.store import replace_match
from libs.jobs.views import JobView, ListFilter, list_jobs
from libs.search.index import utterances_of
from libs.search.rows import IndexedUtterance

BATCH = 100
MAX_CALLS = 10_000


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    evaluated: int  # completed jobs the category was evaluated on
    matched: int  # of those, the ones it matched
    skipped: int = 0  # completed jobs not in the search index, or deleted meanwhile
    # Where to go on (the keyset of the last job seen) when `max_calls` was reached before the
    # oldest job since the time; None when every one was seen.
    after: tuple[datetime, uuid.UUID] | None = None


def call_of(job: JobView, rows: list[IndexedUtterance]) -> Call:
    """The call a live evaluation would have seen, from the job's view and its indexed rows."""
    conversation = job.conversation
    duration = (conversation.duration if conversation else 0.0) or job.duration_seconds or 0.0
    return Call(
        utterances=tuple(
            Utterance(start=r.start, end=r.end, text=r.text, role=r.role, speaker=r.speaker)
            for r in rows
        ),
        duration=duration,
        conversation=conversation,
        redacted=dict(job.redaction.counts) if job.redaction else {},
    )


async def apply(
    pool: asyncpg.Pool,
    key_id: uuid.UUID,
    category: Category,
    since: datetime,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    batch: int = BATCH,
    max_calls: int = MAX_CALLS,
) -> Applied:
    """Evaluate `category` on the key's completed jobs created since `since`, newest first
    (after the keyset `after`, to go on from a previous answer), replacing each one's match of
    it; at most `max_calls` jobs."""
    evaluated = matched = skipped = 0
    while True:
        room = max_calls - evaluated - skipped
        where = ListFilter(states=("completed",), since=since, after=after)
        jobs = await list_jobs(pool, key_id, where, limit=min(batch, room) if room > 0 else 1)
        if not jobs:
            return Applied(evaluated=evaluated, matched=matched, skipped=skipped)
        if room <= 0:
            return Applied(evaluated=evaluated, matched=matched, skipped=skipped, after=after)
        after = (jobs[-1].created_at, jobs[-1].id)
        indexed = await utterances_of(pool, [j.id for j in jobs])
        async with pool.acquire() as conn:
            for job in jobs:
                rows = indexed.get(job.id)
                if rows is None:
                    skipped += 1
                    continue
                found = evaluate([category], call_of(job, rows))
                if await replace_match(conn, job.id, category.name, found[0] if found else None):
                    evaluated += 1
                    matched += bool(found)
                else:
                    skipped += 1  # deleted or requeued meanwhile
