"""The transcriber: AudioStored in, transcripts in S3 + a transcriptions row + TranscriptReady out.

Handlers only raise; `libs.bus.consumer.decide` maps how they ended to ack / nak / term.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import NoReturn

import asyncpg
import msgspec
import structlog

from libs.audio import UndecodableAudio, probe_duration
from libs.audio.channels import (
    analyze_channels,
    analyze_wavs,
    channel_count,
    write_channel_wavs,
)
from libs.audio.limits import AudioLimits
from libs.audio.redact import AudioRedaction, redact_to_wav
from libs.blobstore import BlobNotFound, BlobStore, BlobStoreRefused, BlobStoreUnavailable
from libs.bus import Delivery, Pause, Reject, Retry
from libs.bus.consumer import MAX_RETRY_DELAY, backoff, clamp_delay
from libs.contracts import AudioStored, RedactionSummary, audio_stored_decoder, subjects
from libs.db import DatabaseUnavailable
from libs.errors import InvalidInput
from libs.jobs import lifecycle as repo
from libs.jobs import progress
from libs.layout import redacted_audio_key, transcript_keys, unredacted_transcript_key
from libs.metrics import ENGINE_LATENCY, ENGINE_PAUSED, JOBS_FINISHED, REDACTIONS
from libs.redaction import NO_REDACTION, Policy, RedactionReport, redact_transcript
from libs.transcript import Transcript
from libs.transcript.conversation import DEFAULT_CHANNEL_ROLES, from_channels, summarize
from libs.transcript.render import FORMATS, render_json
from services.transcriber.admission import admit
from services.transcriber.engines import (
    Engine,
    EngineAuthError,
    EngineOptions,
    Engines,
    PermanentEngineError,
    TransientEngineError,
)
from services.transcriber.longaudio import (
    LongAudio,
    SplitPolicy,
    chunk_parallelism,
    fits_one_request,
    most_severe,
    needs_splitting,
)

log = structlog.get_logger()

_FILE_CHUNK = 1 << 20


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, _FILE_CHUNK):
            yield chunk


# Dependency outages: retried with backoff, never a failed job.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (BlobStoreUnavailable, DatabaseUnavailable)

AUTH_PAUSE_SECONDS = 60.0
# Channels transcribed separately at most; `auto` downmixes a file with more, `true` fails it.
MAX_CHANNELS = 8


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _asks_for_speakers(model: str | None) -> bool:
    return model is not None and "diarize" in model


class TranscriptRefused(Exception):
    """The object store finally refused a transcript upload (a 4xx such as a key too long or a
    policy refusal): retrying cannot help, and every retry would pay for the transcription
    again, so the job fails permanently with `storage_refused`."""


class Transcriber:
    """Handles AudioStored deliveries for one worker pool.

    `skip_tenants` is for the default pool when some tenants have dedicated pools: NATS filters
    cannot exclude a subject, so the default durable still receives their events and acks them
    without work, leaving them to the pool whose durable filters on exactly that tenant.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: BlobStore,
        engines: Engines,
        *,
        work_dir: Path | None = None,
        skip_tenants: Iterable[str] = (),
        split_policy: SplitPolicy | None = None,
        audio_limits: AudioLimits | None = None,
    ) -> None:
        self._pool = pool
        self._store = store
        self._engines = engines
        self._work_dir = work_dir
        self._skip_subjects = frozenset(subjects.audio_stored(t) for t in skip_tenants)
        # The redaction policy of each job being split into chunks: a chunk's transcript is
        # redacted before it is saved in Postgres (see _save_chunk).
        self._chunk_policies: dict[uuid.UUID, Policy] = {}
        # MAX_AUDIO_SECONDS and the sample rates accepted (services/transcriber/admission.py);
        # the long-audio path enforces the length again while it decodes.
        self._audio_limits = audio_limits or AudioLimits()
        split_policy = dataclasses.replace(
            split_policy or SplitPolicy(), max_audio_seconds=self._audio_limits.max_seconds
        )
        self._long_audio = LongAudio(
            lambda job_id: repo.load_chunks(pool, job_id), self._save_chunk, split_policy
        )

    async def _save_chunk(self, job_id: uuid.UUID, chunk: repo.StoredChunk) -> None:
        """Saves a chunk for resuming; with a policy, only its redacted transcript, with
        entity-name placeholders whatever the job's substitution: the merged transcript's
        redaction finds them again (counts, word times for the audio, final substitution).
        A value said across two chunks is caught in the merged transcript (each saved chunk
        then holds only part of it)."""
        policy = self._chunk_policies.get(job_id)
        if policy is not None and policy.active:
            placeholders = msgspec.structs.replace(policy, substitution="entity")
            redacted, _ = redact_transcript(chunk.transcript, placeholders)
            chunk = dataclasses.replace(chunk, transcript=redacted)
        await repo.save_chunk(self._pool, job_id, chunk)

    async def handle(self, delivery: Delivery) -> None:
        try:
            event = audio_stored_decoder.decode(delivery.data)
        except msgspec.DecodeError as exc:
            log.error("undecodable_event", subject=delivery.subject, error=str(exc))
            raise Reject(f"undecodable AudioStored: {exc}") from exc
        if delivery.subject in self._skip_subjects:
            # Another pool owns this tenant (see the class docstring).
            return
        with structlog.contextvars.bound_contextvars(
            audio_file_id=event.audio_file_id,
            trace_id=event.trace_id,
            attempt=delivery.num_delivered,
        ):
            started = time.perf_counter()
            outcome = "error"
            summary_fields: dict[str, object] = {}
            try:
                outcome = await self._process(event, delivery, summary_fields)
            finally:
                log.info(
                    "transcription_handled",
                    outcome=outcome,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    force=event.force,
                    **summary_fields,
                )

    async def _process(
        self, event: AudioStored, delivery: Delivery, summary_fields: dict[str, object]
    ) -> str:
        try:
            job = await repo.load_job(self._pool, event.audio_file_id)
        except DatabaseUnavailable as exc:
            raise Retry(f"Postgres unavailable: {exc}") from exc
        if job is None:
            # Outbox rows commit with their job, so this is a foreign or hand-made event.
            raise Reject(f"no job {event.audio_file_id}")
        if job.has_transcript and job.status == "completed" and not event.force:
            return "already_completed"
        if job.failure_status == "permanent" and not event.force:
            # The reference worker's --skip-failed: a permanent failure is final until a rerun.
            return "already_failed"
        if (
            job.failure_status == "transient"
            and job.cooldown_left > 1.0
            and not event.force
            and not delivery.last_attempt
        ):
            # Its --cooldown-minutes: a job that just failed is not retried early, whatever
            # brought the event back (a replay, a second pool, a redelivery racing the nak).
            # Never on the last delivery, which a nak would throw away.
            raise Retry("cooling down", delay=job.cooldown_left)
        engine = self._engines.for_model(event.model)
        try:
            # The job row is the authority; an event from before the row had a policy carries ''.
            policy = Policy.from_spec(job.redact or event.redact)
        except InvalidInput as exc:
            await self._fail(job, event, "invalid_redact", exc.detail)
            raise Reject(exc.detail) from exc
        report: RedactionReport | None = None
        try:
            if not await repo.mark_processing(self._pool, job, force=event.force):
                return "already_completed"
            transcript = await self._transcribe(job, event, policy)
            keys = transcript_keys(
                job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
            )
            record: dict[str, object] | None = None
            summary: RedactionSummary | None = None
            if policy.active:
                # Redacted before anything leaves this process: S3, the row, the event, logs.
                original = transcript
                shape = engine.output_shape(transcript.model, "word")
                transcript, report = redact_transcript(
                    original, policy, timed_segments=shape.segment_timings
                )
                if event.timestamps != "word" and transcript.words is not None:
                    # Words were asked of the engine for the audio's spans only.
                    transcript = msgspec.structs.replace(transcript, words=None)
                record = msgspec.to_builtins(report)
                if policy.keep == "both":
                    original_key = unredacted_transcript_key(
                        job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
                    )
                    await self._put_all([(original_key, render_json(original), "application/json")])
                    record["original_key"] = original_key
            await self._upload(transcript, keys)
            if report is not None and record is not None:
                audio: dict[str, object] = {}
                if policy.audio != "none":
                    audio = await self._redact_audio(job, policy, report)
                    record["audio"] = audio
                summary = RedactionSummary(
                    policy=report.policy,
                    counts=dict(report.counts),
                    total=report.total,
                    audio=str(audio["status"]) if audio else None,
                    audio_detail=str(audio["reason"]) if "reason" in audio else None,
                )
            ready = await repo.complete(
                self._pool,
                job,
                transcript,
                keys,
                force=event.force,
                trace_id=event.trace_id,
                redaction=record,
                summary=summary,
            )
        except EngineAuthError as exc:
            await self._pause(job, event, delivery, engine, exc)
        except PermanentEngineError as exc:
            await self._fail(job, event, exc.code, exc.detail)
            raise Reject(exc.detail) from exc
        except TranscriptRefused as exc:
            await self._fail(job, event, "storage_refused", str(exc))
            raise Reject(str(exc)) from exc
        except BlobNotFound as exc:
            if await repo.is_deleted(self._pool, job.id):
                return "deleted"  # deleted while queued: its audio is gone, nothing to say
            await self._fail(
                job, event, "audio_missing", f"audio object {job.object_key} not found"
            )
            raise Reject("audio object missing") from exc
        except TransientEngineError as exc:
            delay = await self._transient(
                job, event, delivery, exc.code, exc.detail, exc.retry_after
            )
            raise Retry(exc.detail, delay=delay) from exc
        except DEPENDENCY_ERRORS as exc:
            delay = await self._transient(
                job, event, delivery, "dependency_unavailable", str(exc), None
            )
            raise Retry(str(exc), delay=delay) from exc
        ENGINE_PAUSED.set(0)
        JOBS_FINISHED.labels(engine=transcript.engine, outcome="completed").inc()
        if report is not None and ready is not None:
            for cls, count in report.counts.items():
                REDACTIONS.labels(cls).inc(count)
            # Counts only: the summary line of this message carries them (never values).
            summary_fields["redactions"] = report.total
        return "completed" if ready is not None else "completed_elsewhere"

    async def _transcribe(
        self, job: repo.ProcessingJob, event: AudioStored, policy: Policy = NO_REDACTION
    ) -> Transcript:
        engine = self._engines.for_model(event.model)
        options = EngineOptions(
            model=event.model if event.model != "offline" else None,
            language=event.language,
            prompt=event.prompt,
            # Audio redaction needs word timestamps, whatever the job asked to keep.
            timestamps="word"
            if event.timestamps == "word" or policy.audio != "none"
            else "none"
            if event.timestamps == "none"
            else "segment",
        )
        suffix = "." + job.object_key.rsplit(".", 1)[-1] if "." in job.object_key else ""
        # A file, not a directory per job: mkdtemp + rmtree cost ~5% of the worker's CPU at
        # 50 jobs/s. Long audio's chunk files are named after it, so they cannot collide.
        fd, name = tempfile.mkstemp(prefix="transcribe-", suffix=suffix, dir=self._work_dir)
        os.close(fd)
        audio = Path(name)
        try:
            await self._store.download_to(job.object_key, audio)
            await admit(audio, self._audio_limits)  # too long, or not a real sample rate
            started = time.perf_counter()
            limits = engine.limits
            channels, extracted = await self._channels_to_split(engine, audio, event.multichannel)
            # Chunks saved between attempts (long audio, each channel of a call) are redacted
            # with the job's policy before they are stored.
            self._chunk_policies[job.id] = policy
            try:
                if channels:
                    transcript = await self._transcribe_channels(
                        engine, audio, options, job, channels, extracted, event.channel_roles
                    )
                elif limits is not None and await asyncio.to_thread(needs_splitting, audio, limits):
                    transcript = await self._long_audio.transcribe(
                        engine,
                        audio,
                        options,
                        job_id=job.id,
                        model=options.model or engine.default_model,
                        on_chunk=lambda done, total: self._progress(job, event, done, total),
                    )
                else:
                    transcript = await engine.transcribe(audio, options)
            finally:
                self._chunk_policies.pop(job.id, None)
            if not transcript.utterances and _asks_for_speakers(event.model):
                # The model asks for diarization but this engine (offline, or a default engine
                # that ignores model names) cannot: the metadata says so instead of guessing.
                log.info("diarization_unavailable", engine=engine.name, model=event.model)
                transcript = msgspec.structs.replace(
                    transcript,
                    engine_metadata={
                        **transcript.engine_metadata,
                        "speakers": "none",
                        "speakers_detail": f"the {engine.name} engine does not diarize",
                    },
                )
            if transcript.utterances and transcript.conversation is None:
                # The engine told voices apart (diarization): the same metrics as channels.
                transcript = msgspec.structs.replace(
                    transcript,
                    conversation=summarize(
                        transcript.utterances, duration=transcript.duration, method="diarization"
                    ),
                )
            ENGINE_LATENCY.labels(engine=engine.name, model=transcript.model).observe(
                time.perf_counter() - started
            )
        finally:
            audio.unlink(missing_ok=True)
        return transcript

    async def _progress(
        self, job: repo.ProcessingJob, event: AudioStored, done: int, total: int
    ) -> None:
        """Chunk `done` of `total` of a long recording (status + rate-limited JobProgress);
        the last one means the transcript is being assembled and rendered. Never fails a job."""
        try:
            await progress.report(
                self._pool,
                job_id=job.id,
                tenant=job.tenant_prefix,
                stage="rendering" if done >= total else "transcribing",
                chunk=done,
                chunks=total,
                trace_id=event.trace_id,
            )
        except DatabaseUnavailable as exc:
            log.warning("progress_not_recorded", error=str(exc))

    async def _channels_to_split(
        self, engine: Engine, audio: Path, mode: str
    ) -> tuple[int, list[Path] | None]:
        """How many channels to transcribe one by one (0: downmix as a mono recording), and,
        when each channel fits one request whole, the channels extracted as WAV files (the
        caller removes them)."""
        if mode not in ("auto", "true"):
            return 0, None
        try:
            count = await asyncio.to_thread(channel_count, audio)
            if count < 2:
                return 0, None
            if count > MAX_CHANNELS:
                if mode == "true":
                    raise PermanentEngineError(
                        f"the recording has {count} channels; multichannel takes at most"
                        f" {MAX_CHANNELS}",
                        code="too_many_channels",
                    )
                log.info("multichannel_downmixed", channels=count, reason="too_many_channels")
                return 0, None
            seconds = await asyncio.to_thread(probe_duration, audio)
        except UndecodableAudio:
            return 0, None  # the engine's answer on the downmix path is the verdict
        extracted: list[Path] | None = None
        if fits_one_request(seconds, engine.limits, self._long_audio.policy):
            # Each channel goes whole in one request: extract them all in one decoding pass as
            # PCM WAV (Opus-encoding 10 minutes costs seconds of CPU; a mono file this size is
            # sent as is too), and judge `auto` from those files rather than decode again.
            extracted = [audio.with_name(f"{audio.stem}-ch{k}.wav") for k in range(count)]
            try:
                await asyncio.to_thread(write_channel_wavs, audio, extracted)
            except UndecodableAudio:
                _remove(extracted)
                return 0, None
        if mode == "true":
            return count, extracted
        try:
            if extracted is not None:
                report = await asyncio.to_thread(analyze_wavs, extracted)
            else:
                report = await asyncio.to_thread(analyze_channels, audio)
        except UndecodableAudio:
            report = None
        if report is None or not report.distinct:
            _remove(extracted or [])
        if report is None:
            return 0, None
        log.info(
            "multichannel_checked",
            channels=count,
            distinct=report.distinct,
            levels_dbfs=list(report.levels_dbfs),
            max_correlation=report.max_correlation,
        )
        return (count, extracted) if report.distinct else (0, None)

    async def _transcribe_channels(
        self,
        engine: Engine,
        audio: Path,
        options: EngineOptions,
        job: repo.ProcessingJob,
        channels: int,
        extracted: list[Path] | None,
        roles: list[str] | None,
    ) -> Transcript:
        """Every channel through the long-audio path at once, one shared bound on the requests
        in flight; the transcripts merged by time into one conversation."""
        model = options.model or engine.default_model
        slots = asyncio.Semaphore(chunk_parallelism(self._long_audio.policy, engine.limits))
        try:
            results = await asyncio.gather(
                *(
                    self._long_audio.transcribe(
                        engine,
                        audio,
                        options,
                        job_id=job.id,
                        model=model,
                        channel=channel,
                        slots=slots,
                        prepared=None if extracted is None else extracted[channel],
                    )
                    for channel in range(channels)
                ),
                return_exceptions=True,
            )
        finally:
            _remove(extracted or [])
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise most_severe(errors)
        transcripts = [r for r in results if isinstance(r, Transcript)]
        role_map = tuple(roles) if roles is not None else DEFAULT_CHANNEL_ROLES
        metadata = {
            "speakers": "channels",
            "channels": [
                {
                    "channel": channel,
                    **{k: v for k, v in t.engine_metadata.items() if k != "raw_response"},
                }
                for channel, t in enumerate(transcripts)
            ],
            "raw_response": {
                "channels": [t.engine_metadata.get("raw_response") for t in transcripts]
            },
        }
        return from_channels(
            transcripts,
            roles=role_map,
            duration=max(t.duration for t in transcripts),
            metadata=metadata,
        )

    async def _redact_audio(
        self, job: repo.ProcessingJob, policy: Policy, report: RedactionReport
    ) -> dict[str, object]:
        """A copy of the audio with every redacted span beeped or silenced, beside the
        original; with keep=redacted it then replaces the original, only once the copy is
        stored. What happened is returned for the job's redaction record."""
        mode: AudioRedaction = "silence" if policy.audio == "silence" else "beep"
        if report.total == 0:
            return {"status": "nothing_to_redact"}
        if report.timing == "none":
            return {
                "status": "not_redacted",
                "reason": "the engine returned no timestamps for this model, so the redacted "
                "values cannot be located in the audio; the original audio is unchanged (use "
                "whisper-1 or an offline engine for audio redaction)",
            }
        spans = [
            (s.start, s.end) for s in report.spans if s.start is not None and s.end is not None
        ]
        key = redacted_audio_key(job.object_key)
        suffix = "." + job.object_key.rsplit(".", 1)[-1] if "." in job.object_key else ""
        fd, name = tempfile.mkstemp(prefix="transcribe-", suffix=suffix, dir=self._work_dir)
        os.close(fd)
        source = Path(name)
        redacted = source.with_suffix(".redacted.wav")
        try:
            await self._store.download_to(job.object_key, source)
            try:
                await asyncio.to_thread(redact_to_wav, source, redacted, spans, mode=mode)
            except UndecodableAudio as exc:
                return {"status": "not_redacted", "reason": f"the audio did not decode: {exc}"}
            await self._store.put_stream(key, _file_chunks(redacted), "audio/wav")
            replaced = policy.keep == "redacted"
            if replaced:
                # The copy is stored (put_stream returned): only now does the original go.
                stored = await self._store.put_stream(
                    job.object_key, _file_chunks(redacted), "audio/wav"
                )
                await repo.record_audio_replaced(
                    self._pool,
                    job.id,
                    content_type="audio/wav",
                    size=stored.size,
                    sha256=stored.sha256,
                )
        finally:
            source.unlink(missing_ok=True)
            redacted.unlink(missing_ok=True)
        return {
            "status": "redacted",
            "key": key,
            "mode": mode,
            # words: each value's own time span; segments: the whole segments that said one.
            "precision": report.timing,
            "spans": len(spans),
            "replaced_original": replaced,
        }

    async def _upload(self, transcript: Transcript, keys: object) -> None:
        objects = []
        for fmt, (render, content_type, _ext) in FORMATS.items():
            key = getattr(keys, fmt, None)
            if key:
                objects.append((key, render(transcript), content_type))
        await self._put_all(objects)

    async def _put_all(self, objects: list[tuple[str, bytes, str]]) -> None:
        uploads = [self._store.put_bytes(key, body, ctype) for key, body, ctype in objects]
        # Concurrently: four round trips to S3 would otherwise dominate a 1-second job.
        results = await asyncio.gather(*uploads, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        # An outage (or anything unexpected) wins over a refusal: it is retried.
        for error in errors:
            if not isinstance(error, BlobStoreRefused):
                raise error
        if errors:
            raise TranscriptRefused(
                f"object storage refused the transcript upload: {errors[0]}"
            ) from errors[0]

    async def _pause(
        self,
        job: repo.ProcessingJob,
        event: AudioStored,
        delivery: Delivery,
        engine: Engine,
        exc: EngineAuthError,
    ) -> NoReturn:
        """Credentials rejected: no job can succeed, so stop consuming instead of failing them.

        The consumer fetches nothing until `check_credentials` passes, so a long key outage
        costs each in-flight message one delivery. Should that be its last, the job is handed
        to a fresh copy of its event rather than dropped by MaxDeliver.
        """
        ENGINE_PAUSED.set(1)
        log.error(
            "engine_credentials_rejected",
            engine=engine.name,
            detail=exc.detail,
            pause_seconds=AUTH_PAUSE_SECONDS,
        )
        requeued = False
        try:
            await repo.record_transient(
                self._pool, job, code=exc.code, detail=exc.detail, cooldown_seconds=0.0
            )
            if delivery.last_attempt:
                await repo.republish(self._pool, job, event)
                requeued = True
        except DatabaseUnavailable as db_exc:
            log.warning("pause_not_recorded", error=str(db_exc))

        async def probe() -> bool:
            ok = await engine.check_credentials()
            ENGINE_PAUSED.set(0 if ok else 1)
            return ok

        raise Pause(
            f"engine credentials rejected: {exc.detail}",
            seconds=AUTH_PAUSE_SECONDS,
            probe=probe,
            requeued=requeued,
        ) from exc

    async def _fail(
        self, job: repo.ProcessingJob, event: AudioStored, code: str, detail: str
    ) -> None:
        JOBS_FINISHED.labels(engine="-", outcome="failed").inc()
        log.warning("transcription_failed", code=code, detail=detail, permanent=True)
        try:
            await repo.fail(self._pool, job, code=code, detail=detail, trace_id=event.trace_id)
        except DatabaseUnavailable as exc:
            # Cannot record the failure: retry the whole message rather than lose the outcome.
            raise Retry(f"Postgres unavailable while recording failure: {exc}") from exc

    async def _transient(
        self,
        job: repo.ProcessingJob,
        event: AudioStored,
        delivery: Delivery,
        code: str,
        detail: str,
        retry_after: float | None,
    ) -> float:
        """Record a transient failure; the delay before the next attempt (also its cooldown)."""
        if delivery.last_attempt:
            # JetStream will not redeliver again: settle the job as failed, and tell the caller.
            await self._fail(
                job, event, code, f"gave up after {delivery.num_delivered} attempts: {detail}"
            )
            raise Reject(detail)
        delay = (
            backoff(delivery.num_delivered)
            if retry_after is None
            else clamp_delay(retry_after, MAX_RETRY_DELAY)
        )
        log.warning(
            "transcription_retry", code=code, detail=detail, retry_after=retry_after, delay=delay
        )
        try:
            await repo.record_transient(
                self._pool, job, code=code, detail=detail, cooldown_seconds=delay
            )
        except DatabaseUnavailable:
            log.warning("failure_not_recorded", code=code)
        return delay
