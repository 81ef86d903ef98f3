"""The owner of `media_pipeline.insights` (migration 0031): one row per completed job that
services/insights evaluated, as a typed `InsightsRow` once where read.

`save` runs in the caller's transaction, beside the category matches and the InsightsReady
event; `guard` (in that transaction, first) locks the job row so a DELETE either
happens before (nothing is written) or after (the deletion removes the row: `forget`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from libs.contracts import Insights

Status = Literal["completed", "failed", "not_configured"]
# What /status and the API show before the service got to a completed job.
PENDING = "pending"

# A read of the job row (owned by libs/jobs) with a share lock: deletion.request locks it FOR
# UPDATE, so the two serialise; a job deleted (or put back in the queue) meanwhile gets nothing.
GUARD_COMPLETED = """
SELECT status FROM media_pipeline.audio_files WHERE id = $1 FOR SHARE
"""
SAVE = """
INSERT INTO media_pipeline.insights AS i (
    audio_file_id, tenant_prefix, status, reason, insights, model, prompt_tokens,
    completion_tokens, source_event_id)
VALUES ($1, $2, $3, left($4, 2000), $5, $6, $7, $8, $9)
ON CONFLICT (audio_file_id) DO UPDATE SET
    tenant_prefix = EXCLUDED.tenant_prefix, status = EXCLUDED.status, reason = EXCLUDED.reason,
    insights = EXCLUDED.insights, model = EXCLUDED.model, prompt_tokens = EXCLUDED.prompt_tokens,
    completion_tokens = EXCLUDED.completion_tokens, source_event_id = EXCLUDED.source_event_id,
    updated_at = now()
"""
_COLUMNS = """
i.audio_file_id, i.tenant_prefix, i.status, i.reason, i.insights, i.model, i.prompt_tokens,
i.completion_tokens, i.source_event_id, i.created_at, i.updated_at
"""
LOAD = "SELECT" + _COLUMNS + "FROM media_pipeline.insights i WHERE i.audio_file_id = $1"
# Only completed insights count: a failed or not_configured answer is evaluated again when its
# event comes back (a replay after a model outage, or once a model is configured).
ANSWERED = """
SELECT EXISTS (
    SELECT 1 FROM media_pipeline.insights
    WHERE audio_file_id = $1 AND source_event_id = $2 AND status = 'completed')
"""
FORGET = "DELETE FROM media_pipeline.insights WHERE audio_file_id = $1"


class NewInsights(msgspec.Struct, frozen=True, kw_only=True):
    """What services/insights concluded about one transcript."""

    audio_file_id: uuid.UUID
    tenant: str
    status: Status
    reason: str | None = None
    insights: Insights | None = None
    # The TranscriptReady event answered (a redelivery of it is not asked again).
    source_event_id: str | None = None

    @property
    def model(self) -> str | None:
        return None if self.insights is None else self.insights.model

    def args(self) -> tuple[object, ...]:
        usage = self.insights.usage if self.insights is not None else None
        return (
            self.audio_file_id,
            self.tenant,
            self.status,
            self.reason,
            None if self.insights is None else msgspec.to_builtins(self.insights),
            self.model,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            self.source_event_id,
        )


class InsightsRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of `insights`, read once into its types."""

    audio_file_id: uuid.UUID
    tenant: str
    status: Status
    reason: str | None
    insights: Insights | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    source_event_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> InsightsRow:
        raw = row["insights"]
        return cls(
            audio_file_id=row["audio_file_id"],
            tenant=row["tenant_prefix"],
            status=row["status"],
            reason=row["reason"],
            insights=None if raw is None else msgspec.convert(raw, Insights),
            model=row["model"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            source_event_id=row["source_event_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


async def guard(conn: asyncpg.Connection, audio_file_id: uuid.UUID) -> str | None:
    """In the saving transaction, first: lock the job row and return its status (None: no such
    job). Save only when it is still `completed` (not deleted, not requeued meanwhile)."""
    if not conn.is_in_transaction():
        raise RuntimeError("insights.guard must run inside the saving transaction")
    status: str | None = await conn.fetchval(GUARD_COMPLETED, audio_file_id)
    return status


async def save(conn: asyncpg.Connection, new: NewInsights) -> None:
    """Insert or replace the job's row (idempotent: a redelivery writes the same row)."""
    await conn.execute(SAVE, *new.args())


async def load(
    conn: asyncpg.Connection | asyncpg.Pool, audio_file_id: uuid.UUID
) -> InsightsRow | None:
    row = await conn.fetchrow(LOAD, audio_file_id)
    return None if row is None else InsightsRow.from_row(row)


async def answered(
    conn: asyncpg.Connection | asyncpg.Pool, audio_file_id: uuid.UUID, event_id: str
) -> bool:
    """The row already holds completed insights for this TranscriptReady event (a redelivery
    or a replay of it): the model is not asked twice for one transcript."""
    return bool(await conn.fetchval(ANSWERED, audio_file_id, event_id))


async def forget(conn: asyncpg.Connection, audio_file_id: uuid.UUID) -> None:
    """Remove the job's row (inside the deleting transaction)."""
    await conn.execute(FORGET, audio_file_id)
