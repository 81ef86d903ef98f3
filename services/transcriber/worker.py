"""The transcriber: AudioStored in, transcripts in S3 + a transcriptions row + TranscriptReady out.

Handlers only raise; `libs.bus.consumer.decide` maps how they ended to ack / nak / term.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import asyncpg
import msgspec
import structlog

from libs.blobstore import BlobNotFound, BlobStore, BlobStoreUnavailable
from libs.bus import Delivery, Pause, Reject, Retry
from libs.contracts import AudioStored, audio_stored_decoder
from libs.db import CONNECTION_ERRORS, UNAVAILABLE
from libs.layout import transcript_keys
from libs.metrics import ENGINE_LATENCY, ENGINE_PAUSED, JOBS_FINISHED
from libs.transcript import Transcript
from libs.transcript.render import FORMATS
from services.transcriber import repository as repo
from services.transcriber.engines import (
    EngineAuthError,
    EngineOptions,
    Engines,
    PermanentEngineError,
    TransientEngineError,
)

log = structlog.get_logger()

# Dependency outages: retried with backoff, never a failed job.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (BlobStoreUnavailable, *UNAVAILABLE)

AUTH_PAUSE_SECONDS = 60.0
# Transient failures without a server-given Retry-After wait this long before the next try.
DEFAULT_COOLDOWN = 30.0


class Transcriber:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: BlobStore,
        engines: Engines,
        *,
        work_dir: Path | None = None,
    ) -> None:
        self._pool = pool
        self._store = store
        self._engines = engines
        self._work_dir = work_dir

    async def handle(self, delivery: Delivery) -> None:
        try:
            event = audio_stored_decoder.decode(delivery.data)
        except msgspec.DecodeError as exc:
            log.error("undecodable_event", subject=delivery.subject, error=str(exc))
            raise Reject(f"undecodable AudioStored: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            audio_file_id=event.audio_file_id,
            trace_id=event.trace_id,
            attempt=delivery.num_delivered,
        ):
            started = time.perf_counter()
            outcome = "error"
            try:
                outcome = await self._process(event, delivery)
            finally:
                log.info(
                    "transcription_handled",
                    outcome=outcome,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    force=event.force,
                )

    async def _process(self, event: AudioStored, delivery: Delivery) -> str:
        try:
            job = await repo.load_job(self._pool, event.audio_file_id)
        except CONNECTION_ERRORS as exc:
            raise Retry(f"Postgres unavailable: {exc}") from exc
        if job is None:
            # Outbox rows commit with their job, so this is a foreign or hand-made event.
            raise Reject(f"no job {event.audio_file_id}")
        if job.has_transcript and job.status == "completed" and not event.force:
            return "already_completed"
        if job.failure_status == "permanent" and not event.force:
            return "already_failed"
        engine = self._engines.for_model(event.model)
        try:
            if not await repo.mark_processing(self._pool, job, force=event.force):
                return "already_completed"
            transcript = await self._transcribe(job, event)
            keys = transcript_keys(job.object_key, campaign=job.campaign_name)
            await self._upload(transcript, keys)
            ready = await repo.complete(
                self._pool, job, transcript, keys, force=event.force, trace_id=event.trace_id
            )
        except EngineAuthError as exc:
            ENGINE_PAUSED.set(1)
            log.error("engine_credentials_rejected", engine=engine.name, detail=exc.detail)
            raise Pause(
                f"engine credentials rejected: {exc.detail}", seconds=AUTH_PAUSE_SECONDS
            ) from exc
        except PermanentEngineError as exc:
            await self._fail(job, event, exc.code, exc.detail)
            raise Reject(exc.detail) from exc
        except BlobNotFound as exc:
            await self._fail(
                job, event, "audio_missing", f"audio object {job.object_key} not found"
            )
            raise Reject("audio object missing") from exc
        except TransientEngineError as exc:
            await self._transient(job, event, delivery, exc.code, exc.detail, exc.retry_after)
            raise Retry(exc.detail, delay=exc.retry_after) from exc
        except DEPENDENCY_ERRORS as exc:
            await self._transient(job, event, delivery, "dependency_unavailable", str(exc), None)
            raise Retry(str(exc)) from exc
        ENGINE_PAUSED.set(0)
        JOBS_FINISHED.labels(engine=transcript.engine, outcome="completed").inc()
        return "completed" if ready is not None else "completed_elsewhere"

    async def _transcribe(self, job: repo.Job, event: AudioStored) -> Transcript:
        engine = self._engines.for_model(event.model)
        options = EngineOptions(
            model=event.model if event.model != "offline" else None,
            language=event.language,
            timestamps="word"
            if event.timestamps == "word"
            else "none"
            if event.timestamps == "none"
            else "segment",
        )
        suffix = "." + job.object_key.rsplit(".", 1)[-1] if "." in job.object_key else ""
        with tempfile.TemporaryDirectory(prefix="transcribe-", dir=self._work_dir) as tmp:
            audio = Path(tmp) / f"audio{suffix}"
            await self._store.download_to(job.object_key, audio)
            started = time.perf_counter()
            transcript = await engine.transcribe(audio, options)
            ENGINE_LATENCY.labels(engine=engine.name, model=transcript.model).observe(
                time.perf_counter() - started
            )
        return transcript

    async def _upload(self, transcript: Transcript, keys: object) -> None:
        for fmt, (render, content_type, _ext) in FORMATS.items():
            key = getattr(keys, fmt, None)
            if key:
                await self._store.put_bytes(key, render(transcript), content_type)

    async def _fail(self, job: repo.Job, event: AudioStored, code: str, detail: str) -> None:
        JOBS_FINISHED.labels(engine="-", outcome="failed").inc()
        log.warning("transcription_failed", code=code, detail=detail, permanent=True)
        try:
            await repo.fail(self._pool, job, code=code, detail=detail, trace_id=event.trace_id)
        except CONNECTION_ERRORS as exc:
            # Cannot record the failure: retry the whole message rather than lose the outcome.
            raise Retry(f"Postgres unavailable while recording failure: {exc}") from exc

    async def _transient(
        self,
        job: repo.Job,
        event: AudioStored,
        delivery: Delivery,
        code: str,
        detail: str,
        retry_after: float | None,
    ) -> None:
        if delivery.last_attempt:
            # JetStream will not redeliver again: settle the job as failed, and tell the caller.
            await self._fail(
                job, event, code, f"gave up after {delivery.num_delivered} attempts: {detail}"
            )
            raise Reject(detail)
        log.warning("transcription_retry", code=code, detail=detail, retry_after=retry_after)
        try:
            await repo.record_transient(
                self._pool,
                job,
                code=code,
                detail=detail,
                cooldown_seconds=retry_after or DEFAULT_COOLDOWN,
            )
        except CONNECTION_ERRORS:
            log.warning("failure_not_recorded", code=code)
