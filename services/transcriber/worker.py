"""The transcriber: AudioStored in, transcripts in S3 + a transcriptions row + TranscriptReady out.

A job's path is five steps, each a method that can be read (and tested) on its own, called in
order by `_process`:

1. `_guard`: the job's state says whether this delivery has work (completed, failed for good,
   cooling down);
2. `_transcribe`: one request, long audio in chunks, or each channel of a call (the chunks
   saved between attempts are redacted with the job's policy, passed down: `_long_audio`);
3. `_redact` (services.transcriber.redact): off the event loop, bounded, failing closed;
4. `_store_job`: every object, through `_put_all`, the one place a job writes objects;
5. `_announce`: the transcription row and TranscriptReady in one statement.

An attempt that fails ends as one table says (services.transcriber.failures, in `_settle`).
Handlers only raise; `libs.bus.consumer.decide` maps how they ended to ack / nak / term.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

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
from libs.blobstore import BlobNotFound, BlobStore, BlobStoreRefused, StoredObject
from libs.bus import Delivery, Pause, Reject, Retry
from libs.bus.consumer import MAX_RETRY_DELAY, backoff, clamp_delay
from libs.contracts import AudioStored, TranscriptKeys, audio_stored_decoder, subjects
from libs.db import DatabaseUnavailable
from libs.errors import InvalidInput
from libs.jobs import lifecycle as repo
from libs.jobs import progress
from libs.layout import (
    redacted_audio_key,
    replaced_audio_key,
    transcript_keys,
    unredacted_transcript_key,
)
from libs.metrics import ENGINE_LATENCY, ENGINE_PAUSED, JOBS_FINISHED, REDACTIONS
from libs.redaction import (
    NO_REDACTION,
    AudioOutcome,
    Policy,
    RedactionRecord,
    RedactionReport,
    redact_transcript,
)
from libs.transcript import EngineMetadata, Transcript
from libs.transcript.conversation import DEFAULT_CHANNEL_ROLES, from_channels, summarize
from libs.transcript.render import FORMATS, render_json
from services.transcriber import redact
from services.transcriber.admission import admit
from services.transcriber.engines import (
    Engine,
    EngineAuthError,
    EngineOptions,
    Engines,
    PermanentEngineError,
)
from services.transcriber.failures import (
    FAILURE_TYPES,
    InvalidRedaction,
    TranscriptRefused,
    classify,
)
from services.transcriber.longaudio import (
    LongAudio,
    SplitPolicy,
    chunk_parallelism,
    fits_one_request,
    most_severe,
    needs_splitting,
)
from services.transcriber.tombstone import JobDeleted, Tombstone, after_unfinished_attempt

log = structlog.get_logger()

_FILE_CHUNK = 1 << 20


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, _FILE_CHUNK):
            yield chunk


AUTH_PAUSE_SECONDS = 60.0
# Channels transcribed separately at most; `auto` downmixes a file with more, `true` fails it.
MAX_CHANNELS = 8
# Seconds one redaction may take (REDACTION_TIMEOUT_SECONDS) when the caller says nothing.
REDACTION_TIMEOUT = 60.0
_NO_TIMINGS = (
    "the engine returned no timestamps for this model, so the redacted values cannot be located"
    " in the audio; the original audio is unchanged (use whisper-1 or an offline engine for"
    " audio redaction)"
)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _asks_for_speakers(model: str | None) -> bool:
    return model is not None and "diarize" in model


def _suffix(object_key: str) -> str:
    return "." + object_key.rsplit(".", 1)[-1] if "." in object_key else ""


def engine_options(event: AudioStored, policy: Policy) -> EngineOptions:
    return EngineOptions(
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


Outcome = Literal[
    "error",
    "completed",
    "completed_elsewhere",
    "already_completed",
    "already_failed",
    "deleted",
]


@dataclass(frozen=True, slots=True)
class Handled:
    """How a delivery ended when it did not raise, for the summary log line."""

    outcome: Outcome
    # Values redacted (counts only, never values); None without a policy.
    redactions: int | None = None

    def log_fields(self) -> dict[str, object]:
        return {} if self.redactions is None else {"redactions": self.redactions}


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store step wrote: the transcript's keys and the evidence of its redaction."""

    transcript: Transcript
    keys: TranscriptKeys
    record: RedactionRecord | None = None


class Transcriber:
    """Handles AudioStored deliveries for one worker pool.

    `skip_tenants` is for the default pool when some tenants have dedicated pools: NATS filters
    cannot exclude a subject, so the default durable still receives their events and acks them
    without work, leaving them to the pool whose durable filters on exactly that tenant.
    `redaction_timeout` bounds each redaction (REDACTION_TIMEOUT_SECONDS); `redactor` is the
    redaction itself (tests give one that fails).
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
        redaction_timeout: float = REDACTION_TIMEOUT,
        redactor: redact.Redactor = redact_transcript,
        audio_limits: AudioLimits | None = None,
    ) -> None:
        self._pool = pool
        self._store = store
        self._engines = engines
        self._work_dir = work_dir
        self._skip_subjects = frozenset(subjects.audio_stored(t) for t in skip_tenants)
        # MAX_AUDIO_SECONDS and the sample rates accepted (services/transcriber/admission.py);
        # the long-audio path enforces the length again while it decodes.
        self._audio_limits = audio_limits or AudioLimits()
        self._split = dataclasses.replace(
            split_policy or SplitPolicy(), max_audio_seconds=self._audio_limits.max_seconds
        )
        self._redaction_timeout = redaction_timeout
        self._redactor = redactor

    def _long_audio(self, policy: Policy) -> LongAudio:
        """Long audio for one job: its chunks are saved redacted with the job's policy."""
        return LongAudio(
            lambda job_id: repo.load_chunks(self._pool, job_id),
            functools.partial(self._save_chunk, policy),
            self._split,
            # A deleted long job stops at its next chunk.
            before_chunk=lambda job_id: self._tombstone(job_id).check(),
        )

    def _tombstone(self, job_id: uuid.UUID) -> Tombstone:
        return Tombstone(self._pool, self._store, job_id)

    async def _save_chunk(self, policy: Policy, job_id: uuid.UUID, chunk: repo.StoredChunk) -> None:
        """Saves a chunk for resuming; with a policy, only as `libs.redaction.redact_chunk`
        leaves it: entity placeholders, which the merged transcript's redaction finds again
        (counts, word times for the audio, final substitution), and every digit run at the
        chunk's edges masked as well, since it may be part of a value said across the cut
        (libs.redaction.seams). If that redaction fails, nothing is saved and the job fails."""
        if policy.active:
            redacted = await redact.redact_saved_chunk(
                chunk.transcript, policy, timeout=self._redaction_timeout
            )
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
            handled = Handled("error")
            try:
                handled = await self._process(event, delivery)
            finally:
                log.info(
                    "transcription_handled",
                    outcome=handled.outcome,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    force=event.force,
                    **handled.log_fields(),
                )

    async def _process(self, event: AudioStored, delivery: Delivery) -> Handled:
        job = await self._guard(event, delivery)
        if isinstance(job, Handled):
            return job
        engine = self._engines.for_model(event.model)
        try:
            policy = self._policy(job, event)
            if not await repo.mark_processing(self._pool, job, force=event.force):
                return Handled("already_completed")
            transcript = await self._transcribe(job, event, policy)
            redacted = await self._redact(transcript, policy, event, engine)
            stored = await self._store_job(job, redacted, policy)
            return await self._announce(job, event, stored)
        except JobDeleted:
            return Handled("deleted")  # what it wrote is handed back; acked, nothing announced
        except EngineAuthError as exc:
            await self._pause(job, event, delivery, engine, exc)
        except FAILURE_TYPES as exc:
            return await self._settle(job, event, delivery, exc)

    async def _guard(self, event: AudioStored, delivery: Delivery) -> repo.ProcessingJob | Handled:
        """The job this delivery is for, if it has work to do; else how the delivery ends."""
        try:
            job = await repo.load_job(self._pool, event.audio_file_id)
        except DatabaseUnavailable as exc:
            raise Retry(f"Postgres unavailable: {exc}") from exc
        if job is None:
            # Outbox rows commit with their job, so this is a foreign or hand-made event.
            raise Reject(f"no job {event.audio_file_id}")
        if job.status == "deleted":  # nothing to do, nothing to say
            if delivery.num_delivered > 1:  # ...but an attempt before may have died mid-upload
                try:
                    await after_unfinished_attempt(self._pool, self._store, job, event.storage_key)
                except DatabaseUnavailable as exc:
                    raise Retry(f"Postgres unavailable: {exc}") from exc
            return Handled("deleted")
        if job.has_transcript and job.status == "completed" and not event.force:
            return Handled("already_completed")
        if job.failure_status == "permanent" and not event.force:
            # The reference worker's --skip-failed: a permanent failure is final until a rerun.
            return Handled("already_failed")
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
        return job

    @staticmethod
    def _policy(job: repo.ProcessingJob, event: AudioStored) -> Policy:
        try:
            # The job row is the authority; an event from before the row had a policy carries ''.
            return Policy.from_spec(job.redact or event.redact)
        except InvalidInput as exc:
            raise InvalidRedaction(exc.detail) from exc

    async def _settle(
        self, job: repo.ProcessingJob, event: AudioStored, delivery: Delivery, exc: Exception
    ) -> Handled:
        """An attempt that failed, as services.transcriber.failures says: a permanent failure
        is recorded and rejected, a transient one recorded and retried (both raise)."""
        failure = classify(exc)
        if failure is None:
            raise exc
        if isinstance(exc, BlobNotFound):
            if await repo.is_deleted(self._pool, job.id):
                return Handled("deleted")  # deleted while queued: its audio is gone
            # Not the key in the detail: it names the phone.
            failure = dataclasses.replace(failure, detail="the job's audio object was not found")
        if failure.permanent:
            await self._fail(job, event, failure.code, failure.detail)
            raise Reject(failure.detail) from exc
        delay = await self._transient(
            job, event, delivery, failure.code, failure.detail, failure.retry_after
        )
        raise Retry(failure.detail, delay=delay) from exc

    async def _redact(
        self, transcript: Transcript, policy: Policy, event: AudioStored, engine: Engine
    ) -> redact.Redacted:
        """Redacted before anything leaves this process: S3, the row, the event, logs."""
        shape = engine.output_shape(transcript.model, "word")
        return await redact.redact(
            transcript,
            policy,
            timed_segments=shape.segment_timings,
            timestamps=event.timestamps,
            timeout=self._redaction_timeout,
            redactor=self._redactor,
        )

    async def _store_job(
        self, job: repo.ProcessingJob, redacted: redact.Redacted, policy: Policy
    ) -> Stored:
        """Every object of the job: the unredacted original first when the policy keeps both,
        the transcript in every format, then the redacted audio; and the redaction record."""
        keys = transcript_keys(
            job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
        )
        if redacted.original is not None:
            original_key = unredacted_transcript_key(
                job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix
            )
            await self._put_all(
                job.id, [(original_key, render_json(redacted.original), "application/json")]
            )
        await self._upload(job.id, redacted.transcript, keys)
        if redacted.report is None:
            return Stored(redacted.transcript, keys)
        audio = None
        if policy.audio != "none":
            audio = await self._redact_audio(job, policy, redacted.report)
        # Where the original is follows from the job (libs/layout); the key names the phone.
        original_stored = True if redacted.original is not None else None
        record = RedactionRecord.of(redacted.report, original_stored=original_stored, audio=audio)
        return Stored(redacted.transcript, keys, record)

    async def _announce(
        self, job: repo.ProcessingJob, event: AudioStored, stored: Stored
    ) -> Handled:
        """The transcription row and TranscriptReady, in one statement (once per job)."""
        record = stored.record
        ready = await repo.complete(
            self._pool,
            job,
            stored.transcript,
            stored.keys,
            force=event.force,
            trace_id=event.trace_id,
            redaction=record,
            summary=None if record is None else record.summary(),
        )
        ENGINE_PAUSED.set(0)
        JOBS_FINISHED.labels(engine=stored.transcript.engine, outcome="completed").inc()
        if ready is None:
            await self._tombstone(job.id).check()  # refused because the job was deleted?
            return Handled("completed_elsewhere")
        if record is None:
            return Handled("completed")
        for cls, count in record.counts.items():
            REDACTIONS.labels(cls).inc(count)
        return Handled("completed", redactions=record.total)

    def _temp_path(self, object_key: str) -> Path:
        """A fresh temporary file named like the object (its extension tells decoders what it
        is). A file, not a directory per job: mkdtemp + rmtree cost ~5% of the worker's CPU at
        50 jobs/s. Long audio's chunk files are named after it, so they cannot collide."""
        fd, name = tempfile.mkstemp(
            prefix="transcribe-", suffix=_suffix(object_key), dir=self._work_dir
        )
        os.close(fd)
        return Path(name)

    async def _transcribe(
        self, job: repo.ProcessingJob, event: AudioStored, policy: Policy = NO_REDACTION
    ) -> Transcript:
        engine = self._engines.for_model(event.model)
        audio = self._temp_path(job.object_key)
        try:
            await self._store.download_to(job.object_key, audio)
            await admit(audio, self._audio_limits)  # too long, or not a real sample rate
            started = time.perf_counter()
            transcript = await self._transcribe_file(engine, audio, job, event, policy)
            transcript = self._with_speakers(transcript, engine, event)
            ENGINE_LATENCY.labels(engine=engine.name, model=transcript.model).observe(
                time.perf_counter() - started
            )
        finally:
            audio.unlink(missing_ok=True)
        return transcript

    async def _transcribe_file(
        self,
        engine: Engine,
        audio: Path,
        job: repo.ProcessingJob,
        event: AudioStored,
        policy: Policy,
    ) -> Transcript:
        """Each channel of a call, a recording too long for one request in chunks, or the
        file in one request. Chunks saved between attempts are redacted with `policy`."""
        options = engine_options(event, policy)
        long_audio = self._long_audio(policy)
        channels, extracted = await self._channels_to_split(engine, audio, event.multichannel)
        if channels:
            return await self._transcribe_channels(
                engine,
                audio,
                options,
                job,
                channels,
                extracted,
                event.channel_roles,
                long_audio,
            )
        limits = engine.limits
        if limits is not None and await asyncio.to_thread(needs_splitting, audio, limits):
            return await long_audio.transcribe(
                engine,
                audio,
                options,
                job_id=job.id,
                model=options.model or engine.default_model,
                on_chunk=lambda done, total: self._progress(job, event, done, total),
            )
        return await engine.transcribe(audio, options)

    @staticmethod
    def _with_speakers(transcript: Transcript, engine: Engine, event: AudioStored) -> Transcript:
        """Says what is known of the speakers: a diarized transcript gets the conversation
        metrics channels get; a model that asks for diarization from an engine that cannot
        gets metadata saying so, rather than a guess."""
        if not transcript.utterances and _asks_for_speakers(event.model):
            log.info("diarization_unavailable", engine=engine.name, model=event.model)
            return msgspec.structs.replace(
                transcript,
                engine_metadata=msgspec.structs.replace(
                    transcript.engine_metadata,
                    speakers="none",
                    speakers_detail=f"the {engine.name} engine does not diarize",
                ),
            )
        if transcript.utterances and transcript.conversation is None:
            return msgspec.structs.replace(
                transcript,
                conversation=summarize(
                    transcript.utterances, duration=transcript.duration, method="diarization"
                ),
            )
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
        if fits_one_request(seconds, engine.limits, self._split):
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
        long_audio: LongAudio,
    ) -> Transcript:
        """Every channel through the long-audio path at once, one shared bound on the requests
        in flight; the transcripts merged by time into one conversation (redacted later,
        speaker by speaker: libs.redaction.apply)."""
        model = options.model or engine.default_model
        slots = asyncio.Semaphore(chunk_parallelism(self._split, engine.limits))
        try:
            results = await asyncio.gather(
                *(
                    long_audio.transcribe(
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
        metadata = EngineMetadata(
            speakers="channels",
            channels=tuple(
                msgspec.structs.replace(t.engine_metadata, channel=channel, raw_response=None)
                for channel, t in enumerate(transcripts)
            ),
            raw_response={"channels": [t.engine_metadata.raw_response for t in transcripts]},
        )
        return from_channels(
            transcripts,
            roles=role_map,
            duration=max(t.duration for t in transcripts),
            metadata=metadata,
        )

    async def _redact_audio(
        self, job: repo.ProcessingJob, policy: Policy, report: RedactionReport
    ) -> AudioOutcome:
        """A copy of the audio with every redacted span beeped or silenced, beside the
        original; with keep=redacted it then replaces the original, only once the copy is
        stored. What happened is returned for the job's redaction record."""
        mode: AudioRedaction = "silence" if policy.audio == "silence" else "beep"
        if report.total == 0:
            return AudioOutcome(status="nothing_to_redact")
        if report.timing == "none":
            return AudioOutcome(status="not_redacted", reason=_NO_TIMINGS)
        spans = [
            (s.start, s.end) for s in report.spans if s.start is not None and s.end is not None
        ]
        key = redacted_audio_key(job.object_key)
        source = self._temp_path(job.object_key)
        redacted = source.with_suffix(".redacted.wav")
        replaced = policy.keep == "redacted"
        try:
            await self._store.download_to(job.object_key, source)
            try:
                await asyncio.to_thread(redact_to_wav, source, redacted, spans, mode=mode)
            except UndecodableAudio as exc:
                return AudioOutcome(
                    status="not_redacted", reason=f"the audio did not decode: {exc}"
                )
            await self._put_all(job.id, [(key, redacted, "audio/wav")])
            if replaced:
                # Stored under a .wav key (what it holds); the row moves to it in one step
                # with the original's removal recorded; only then does the original go.
                wav_key = replaced_audio_key(job.object_key)
                (stored,) = await self._put_all(job.id, [(wav_key, redacted, "audio/wav")])
                new = repo.StoredAudio(wav_key, "audio/wav", stored.size, stored.sha256)
                await repo.record_audio_replaced(
                    self._pool, self._store, job.id, job.object_key, new
                )
        finally:
            source.unlink(missing_ok=True)
            redacted.unlink(missing_ok=True)
        return AudioOutcome(
            status="redacted",
            mode=mode,
            precision=report.timing,
            spans=len(spans),
            replaced_original=replaced,
        )

    async def _upload(self, job_id: uuid.UUID, transcript: Transcript, keys: object) -> None:
        objects = []
        for fmt, (render, content_type, _ext) in FORMATS.items():
            key = getattr(keys, fmt, None)
            if key:
                objects.append((key, render(transcript), content_type))
        await self._put_all(job_id, objects)

    async def _put_all(
        self, job_id: uuid.UUID, objects: Sequence[tuple[str, bytes | Path, str]]
    ) -> list[StoredObject]:
        """The one place a job writes objects: transcripts (bytes) and audio (a file, streamed
        in constant memory), all at once. A refusal fails the job (`storage_refused`). Guarded
        by the job's tombstone (services.transcriber.tombstone): nothing is written for a
        deleted job, and what was written while a DELETE landed is removed (JobDeleted)."""
        async with self._tombstone(job_id).writing([key for key, _, _ in objects]):
            uploads = [self._put(key, body, ctype) for key, body, ctype in objects]
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
        return [r for r in results if isinstance(r, StoredObject)]

    def _put(self, key: str, body: bytes | Path, content_type: str) -> Awaitable[StoredObject]:
        if isinstance(body, Path):
            return self._store.put_stream(key, _file_chunks(body), content_type)
        return self._store.put_bytes(key, body, content_type)

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
