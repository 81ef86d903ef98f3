"""`transcribe jobs requeue-failed`: transient failures by default, permanent ones on request,
each through a forced AudioStored in the outbox, so the job really runs again."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from libs.blobstore import S3BlobStore
from libs.jobs.requeue import requeue_failed
from services.cli import build_parser
from tests.integration.ops.conftest import (
    FIXTURES_WAV,
    bootstrap_key_id,
    insert_job,
    new_job,
    wait_completed,
)
from tests.stack_fixtures import RunningStack

pytestmark = pytest.mark.integration

FAILURE = """
INSERT INTO media_pipeline.transcription_failures (audio_file_id, status, error_code, error)
VALUES ($1, $2, 'engine_unavailable', 'test')
"""


async def _failed_job(pool: asyncpg.Pool, store: S3BlobStore, tenant: str, status: str) -> str:
    job = new_job(await bootstrap_key_id(pool), tenant=tenant)
    await insert_job(pool, job, publish=False)
    await store.put_bytes(job.object_key, Path(FIXTURES_WAV).read_bytes(), "audio/wav")
    await pool.execute(FAILURE, job.id, status)
    await pool.execute(
        "UPDATE media_pipeline.audio_files SET status = $2 WHERE id = $1",
        job.id,
        "failed" if status == "permanent" else "queued",
    )
    return str(job.id)


async def test_requeue_failed_transient_then_permanent(
    running_stack: RunningStack, pool: asyncpg.Pool
) -> None:
    tenant = f"rq{uuid.uuid4().hex[:8]}"
    async with S3BlobStore.open(running_stack.settings.require_s3()) as store:
        transient = await _failed_job(pool, store, tenant, "transient")
        permanent = await _failed_job(pool, store, tenant, "permanent")

    dry = await requeue_failed(pool, tenant=tenant, dry_run=True)
    assert [r.audio_file_id for r in dry] == [transient] and not dry[0].requeued

    done = await requeue_failed(pool, tenant=tenant)
    assert [(r.audio_file_id, r.requeued) for r in done] == [(transient, True)]
    await wait_completed(pool, transient)
    assert (
        await pool.fetchval(
            "SELECT status FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(permanent)
        )
        == "failed"
    )

    done = await requeue_failed(pool, tenant=tenant, include_permanent=True)
    assert [(r.audio_file_id, r.requeued) for r in done] == [(permanent, True)]
    await wait_completed(pool, permanent)
    assert await requeue_failed(pool, tenant=tenant, include_permanent=True) == []


def test_cli_arguments() -> None:
    args = build_parser().parse_args(
        ["jobs", "requeue-failed", "--since", "2h", "--tenant", "gateway", "--permanent"]
    )
    assert (args.since, args.tenant, args.permanent, args.dry_run) == ("2h", "gateway", True, False)
