"""A job deleted while the transcriber works on it: stop, and leave nothing behind.

A DELETE (or retention) tombstones the job and removes every object the job may have stored
(libs/jobs/deletion.py), but a transcriber already running has the job's keys in hand. So each
upload is guarded (`Tombstone.writing`): the tombstone is read before it (nothing is written
for a deleted job) and after it, even when it failed, since a DELETE may have landed while it
ran; what was written then is handed back to the deletion (re-armed with those keys and removed
at once, or by the finisher when object storage is down) and `JobDeleted` ends the message as
"deleted": acked, no failure recorded, nothing announced. Long audio reads it once before each
chunk (`Tombstone.check`), so a deleted long job stops at its next chunk.

An attempt that never ended (the process died between an upload and the check after it) is
covered by its message's redelivery: a redelivered message of a deleted job hands every key
the job may have written back to the deletion once more (`after_unfinished_attempt`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import PurePosixPath

import asyncpg
import structlog

from libs.jobs import deletion, lifecycle

log = structlog.get_logger()


class JobDeleted(Exception):
    """The job was deleted while it was being transcribed; whatever it wrote is removed."""


class Tombstone:
    """The deletion checks of one job (one cheap indexed read each)."""

    def __init__(
        self, pool: asyncpg.Pool, store: deletion.ObjectDeleter, job_id: uuid.UUID
    ) -> None:
        self._pool = pool
        self._store = store
        self._job_id = job_id

    async def check(self) -> None:
        """Raise JobDeleted when the job has been deleted."""
        if await lifecycle.is_deleted(self._pool, self._job_id):
            log.info("deleted_job_stopped")
            raise JobDeleted(str(self._job_id))

    async def handed_back(self, keys: Sequence[str]) -> bool:
        """If the job has been deleted, hand `keys` (written for it) to its deletion and say so."""
        if not await lifecycle.is_deleted(self._pool, self._job_id):
            return False
        removed = await deletion.hand_back(self._pool, self._store, self._job_id, keys)
        log.info("deleted_job_writes_removed", objects=len(keys), removed_now=removed)
        return True

    @asynccontextmanager
    async def writing(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Guard the upload of `keys` in the body: not started for a deleted job; undone (and
        JobDeleted raised) when the job was deleted while it ran, whether it succeeded or not."""
        await self.check()
        try:
            yield
        except Exception as exc:
            if await self.handed_back(keys):
                raise JobDeleted(str(self._job_id)) from exc
            raise
        if await self.handed_back(keys):
            raise JobDeleted(str(self._job_id))


async def after_unfinished_attempt(
    pool: asyncpg.Pool,
    store: deletion.ObjectDeleter,
    job: lifecycle.ProcessingJob,
    audio_object_key: str,
) -> None:
    """A deleted job's message came back: the attempt before may have died after an upload and
    before its check, with the deletion already finished. Remove every key the job may have
    written once more. The tombstone no longer holds the object key (it names the phone), so it
    comes from the message; only a key named after this job is taken (the layout names the
    audio after the job's id, and every other key mirrors it)."""
    if PurePosixPath(audio_object_key).stem != str(job.id):
        log.warning("deleted_job_key_not_its_own")
        return
    keys = deletion.planned_keys(
        audio_object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
    )
    removed = await deletion.hand_back(pool, store, job.id, keys)
    log.info("deleted_job_swept_again", objects=len(keys), removed_now=removed)
