"""Long or awkward audio for engines with upload limits: transcode, split at silence, resume.

A recording over the engine's size or duration limit (or in a container it does not decode) is
planned into chunks cut at silence with a small overlap (libs.audio.split), each chunk is
transcoded to Ogg/Opus and transcribed with bounded concurrency, and every finished chunk is
saved in Postgres at once. A failed chunk fails the attempt (the consumer retries it later);
the next attempt, in this process or another, loads the saved chunks and only sends the rest.
The chunk transcripts are reassembled by libs.transcript.merge with timings offset by each
chunk's exact sample position.

A multichannel recording goes through here once per channel (`channel=k`): the same plan,
encode and resume steps on channel k decoded alone, its chunks saved under indexes
`(k + 1) * CHANNEL_STRIDE + i` so the channels of one job never reuse each other's chunks, and
one semaphore shared by the channels bounds the job's requests in flight.

Before each chunk is sent, `before_chunk(job_id)` may stop the job (it raises: the transcriber
reads the job's tombstone there, so a deleted job stops at its next chunk); the chunks not yet
started are then not sent at all.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import structlog

from libs.audio import SAMPLE_RATE, UndecodableAudio, probe_duration
from libs.audio.limits import AudioTooLong
from libs.audio.split import (
    ChunkPlan,
    chunk_extension,
    encode_window,
    frame_energies,
    plan_chunks,
)
from libs.audio.turns import plan_turns
from libs.jobs.lifecycle import StoredChunk
from libs.transcript import ChunkInfo, EngineMetadata, Transcript
from libs.transcript.merge import ChunkTranscript, merge
from services.transcriber.engines import (
    Engine,
    EngineAuthError,
    EngineOptions,
    PermanentEngineError,
    UploadLimits,
)
from services.transcriber.tombstone import JobDeleted

log = structlog.get_logger()

# (chunks done, chunks in all); must not raise (progress never fails a job).
OnChunk = Callable[[int, int], Awaitable[None]]

# AMR-NB's lowest mode is 4.75 kbit/s; nothing we accept packs speech tighter than 500 B/s.
_MIN_BYTES_PER_SECOND = 500

# Saved chunk indexes of channel k start at (k + 1) * CHANNEL_STRIDE (a downmix's at 0): more
# chunks than this in one channel would be a recording of over two months.
CHANNEL_STRIDE = 10_000
# A speech turn sent to a text-only engine is at most this long: its text is timed by the
# turn's bounds, so a longer turn would blur the conversation's timeline.
TURN_SECONDS = 30.0

LoadChunks = Callable[[uuid.UUID], Awaitable[dict[int, StoredChunk]]]
SaveChunk = Callable[[uuid.UUID, StoredChunk], Awaitable[None]]
# Called once before each chunk is sent; raises to stop the job (e.g. JobDeleted).
BeforeChunk = Callable[[uuid.UUID], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SplitPolicy:
    # Chunks well under the gpt-4o models' 1400 s: shorter requests fail (and retry) cheaper.
    chunk_seconds: float = 600.0
    search_seconds: float = 60.0
    overlap_seconds: float = 1.0
    # Per job; with many jobs in flight the engine sees up to jobs x this many requests.
    chunk_concurrency: int = 4
    # MAX_AUDIO_SECONDS, enforced while the recording is decoded for planning (None: no limit).
    max_audio_seconds: float | None = None


def needs_splitting(audio: Path, limits: UploadLimits) -> bool:
    """Blocking (probes the file): over the size or duration limit, or a container the engine
    does not take. Undecodable files are left to the engine, whose answer is the verdict."""
    ext = audio.suffix.lower().lstrip(".")
    if limits.extensions is not None and ext not in limits.extensions:
        return True
    size = audio.stat().st_size
    if size > limits.max_bytes:
        return True
    if size < limits.max_seconds * _MIN_BYTES_PER_SECOND:
        # Too small to be that long even at the lowest speech bit rates: skip the probe, which
        # costs ~9 ms of FFmpeg on a WAV and showed up as a third of a busy worker's CPU.
        return False
    try:
        duration = _wav_duration(audio) if ext == "wav" else None
        if duration is None:
            duration = probe_duration(audio)
    except UndecodableAudio:
        return False
    return duration > limits.max_seconds


def fits_one_request(seconds: float, limits: UploadLimits | None, policy: SplitPolicy) -> bool:
    """Would `seconds` of 16 kHz mono PCM WAV go to the engine in one request, unsplit?"""
    if seconds > policy.chunk_seconds:
        return False
    if limits is None:
        return True
    size = 44 + seconds * SAMPLE_RATE * 2
    takes_wav = limits.extensions is None or "wav" in limits.extensions
    return takes_wav and size <= limits.max_bytes and seconds <= limits.max_seconds


def _wav_frames(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes()


def _wav_duration(audio: Path) -> float | None:
    """PCM WAV's duration from its header (microseconds, not FFmpeg's milliseconds)."""
    try:
        with wave.open(str(audio), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate > 0 else None
    except (wave.Error, EOFError, OSError):
        return None


def chunk_bounds(policy: SplitPolicy, limits: UploadLimits | None) -> dict[str, float]:
    """`plan_chunks` arguments: the policy's chunk length, shortened so that no chunk (its
    overlap included) is longer than the engine takes in one request."""
    target = policy.chunk_seconds
    if limits is not None:
        target = min(target, limits.max_seconds - policy.overlap_seconds)
    return {
        "target_seconds": target,
        "search_seconds": min(policy.search_seconds, target / 4),
        "overlap_seconds": policy.overlap_seconds,
    }


def chunk_parallelism(policy: SplitPolicy, limits: UploadLimits | None) -> int:
    """Chunks of one job in flight: the policy's bound, or fewer if the engine says so."""
    parallel = policy.chunk_concurrency
    if limits is not None and limits.parallel_chunks is not None:
        parallel = min(parallel, limits.parallel_chunks)
    return max(1, parallel)


def request_key(options: EngineOptions, model: str, channel: int | None = None) -> str:
    key = f"{model}|{options.timestamps}|{options.language or ''}"
    return key if channel is None else f"{key}|ch{channel}"


class LongAudio:
    def __init__(
        self,
        load: LoadChunks,
        save: SaveChunk,
        policy: SplitPolicy | None = None,
        before_chunk: BeforeChunk | None = None,
    ) -> None:
        self._load = load
        self.save = save
        self.policy = policy or SplitPolicy()
        self.before_chunk = before_chunk

    async def transcribe(
        self,
        engine: Engine,
        audio: Path,
        options: EngineOptions,
        *,
        job_id: uuid.UUID,
        model: str,
        on_chunk: OnChunk | None = None,
        channel: int | None = None,
        slots: asyncio.Semaphore | None = None,
        prepared: Path | None = None,
    ) -> Transcript:
        """The whole recording (its downmix, or one `channel`), chunk by chunk. `slots` bounds
        the requests in flight; pass one semaphore to every channel of a job to share it.
        `prepared`: that channel already extracted whole as a 16 kHz mono WAV that fits one
        request (`write_channel_wavs`), sent as its one chunk instead of planned and encoded.
        `on_chunk(done, total)`: told once the plan is known (chunks reused from an earlier
        attempt count as done) and after every chunk transcribed (progress reporting)."""
        wanted = options.timestamps
        route = _route(engine, model, options, audio, channel, prepared)
        started = time.perf_counter()
        plans, total = await self._plan(
            engine, route.source, route.source_channel, route.prepared, turns=route.turns
        )
        if not plans:
            return _silence(engine, model, total)
        parallel = chunk_parallelism(self.policy, engine.limits)
        attempt = _Attempt(
            owner=self,
            engine=engine,
            options=route.options,
            job_id=job_id,
            channel=channel,
            named_after=audio,
            source=route.source,
            source_channel=route.source_channel,
            prepared=route.prepared,
            plans=plans,
            key=request_key(route.options, model, channel) + ("|turns" if route.turns else ""),
            slots=slots or asyncio.Semaphore(max(1, parallel)),
            on_chunk=on_chunk,
        )
        await attempt.resume(await self._load(job_id))
        await attempt.run_all(workers=parallel)
        attempt.raise_if_failed()
        transcript = attempt.merged(total, timed=route.timed, overlapping=not route.turns)
        if wanted == "none" and channel is None:
            # A channel's segments are still needed: they become the conversation's utterances.
            transcript = msgspec.structs.replace(transcript, segments=())
        log.info(
            "long_audio_transcribed",
            channel=channel,
            chunks=len(plans),
            reused=attempt.reused,
            audio_seconds=round(total / SAMPLE_RATE, 1),
            seconds=round(time.perf_counter() - started, 2),
        )
        return transcript

    async def _plan(
        self,
        engine: Engine,
        audio: Path,
        channel: int | None,
        prepared: Path | None,
        *,
        turns: bool,
    ) -> tuple[list[ChunkPlan], int]:
        """The chunks to send (speech turns, or long audio cut at silence) and the samples in
        all; `prepared` is sent whole as one chunk."""
        if prepared is not None:
            total = await asyncio.to_thread(_wav_frames, prepared)
            return [ChunkPlan(index=0, start=0, cut=total, end=total)], total
        try:
            energies, total = await asyncio.to_thread(
                frame_energies, audio, channel=channel, max_seconds=self.policy.max_audio_seconds
            )
        except UndecodableAudio as exc:
            raise PermanentEngineError(str(exc), code="invalid_media") from exc
        except AudioTooLong as exc:
            raise PermanentEngineError(exc.detail, code=exc.code) from exc
        bounds = chunk_bounds(self.policy, engine.limits)
        if turns:
            longest = min(TURN_SECONDS, bounds["target_seconds"])
            return plan_turns(energies, total, max_turn_seconds=longest), total
        return plan_chunks(energies, total, **bounds), total


@dataclass(frozen=True)
class _Route:
    """How a recording (or one channel) is sent: with which options, whether the engine's
    answers come back timed, whether it goes turn by turn, and where chunks are cut from."""

    options: EngineOptions
    timed: bool
    turns: bool
    source: Path
    source_channel: int | None
    prepared: Path | None


def _route(
    engine: Engine,
    model: str,
    options: EngineOptions,
    audio: Path,
    channel: int | None,
    prepared: Path | None,
) -> _Route:
    """The timing and turn decision for `LongAudio.transcribe`."""
    if options.timestamps == "none" and engine.output_shape(model, "segment").segment_timings:
        # Chunks that come back timed are joined by their times, exactly; by text alone the
        # seam is a guess. The caller still gets no segments.
        options = msgspec.structs.replace(options, timestamps="segment")
    timed = engine.output_shape(model, options.timestamps).segment_timings
    # A channel of a call sent to an engine that answers text only goes turn by turn, so
    # each turn's text is timed by the turn (see libs.audio.turns).
    turns = channel is not None and not timed
    # Where the chunks are cut from: the recording's channel, or that channel extracted.
    if turns and prepared is not None:
        return _Route(options, timed, turns, source=prepared, source_channel=None, prepared=None)
    return _Route(options, timed, turns, source=audio, source_channel=channel, prepared=prepared)


@dataclass
class _Attempt:
    """One attempt at a recording (or one channel of it): its plan, the chunks an earlier
    attempt saved, and the chunks this one transcribes, saved one by one as they finish."""

    owner: LongAudio
    engine: Engine
    options: EngineOptions
    job_id: uuid.UUID
    channel: int | None
    named_after: Path  # chunk files are named after the job's audio file
    source: Path  # where chunks are cut from (the recording, or its channel extracted)
    source_channel: int | None
    prepared: Path | None  # sent whole as the one chunk
    plans: list[ChunkPlan]
    key: str
    slots: asyncio.Semaphore
    on_chunk: OnChunk | None
    results: dict[int, Transcript] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    reused: int = 0

    @property
    def base(self) -> int:
        return 0 if self.channel is None else (self.channel + 1) * CHANNEL_STRIDE

    def reuse(self, saved: dict[int, StoredChunk]) -> None:
        """Takes the chunks an earlier attempt saved for exactly this plan and request."""
        for p in self.plans:
            stored = saved.get(self.base + p.index)
            if stored is not None and (
                stored.start_sample,
                stored.end_sample,
                stored.request_key,
            ) == (p.start, p.end, self.key):
                self.results[p.index] = stored.transcript
        self.reused = len(self.results)

    async def resume(self, saved: dict[int, StoredChunk]) -> None:
        """Take what an earlier attempt saved (`reuse`), then report the plan, the chunks
        reused counting as done."""
        self.reuse(saved)
        if self.on_chunk is not None:
            await self.on_chunk(self.reused, len(self.plans))

    def raise_if_failed(self) -> None:
        """Log a failed attempt and raise its most severe error; nothing when all went well."""
        if self.errors:
            log.warning(
                "long_audio_attempt_failed",
                channel=self.channel,
                chunks=len(self.plans),
                done=len(self.results),
                reused=self.reused,
                failed=len(self.errors),
            )
            raise most_severe(self.errors)

    async def run_all(self, *, workers: int) -> None:
        """A few workers take the chunks in turn, so the tasks (and their frames) in memory
        are bounded by the parallelism, not by the number of chunks (2,000 tasks held ~7 MB).
        After a failure no further chunk is started: the attempt is lost anyway."""
        todo = iter([p for p in self.plans if p.index not in self.results])

        async def drain() -> None:
            for plan in todo:
                if self.errors:
                    return
                await self._run(plan)

        await asyncio.gather(*(drain() for _ in range(max(1, workers))))

    async def _run(self, plan: ChunkPlan) -> None:
        async with self.slots:
            if self.errors:
                return
            path = self.prepared or self._chunk_path(plan)
            try:
                before = self.owner.before_chunk
                if before is not None:
                    await before(self.job_id)
                if self.prepared is None:
                    await asyncio.to_thread(
                        encode_window,
                        self.source,
                        path,
                        start=plan.start,
                        samples=plan.samples,
                        encoding=self._encoding,
                        channel=self.source_channel,
                    )
                transcript = await self.engine.transcribe(path, self.options)
                chunk = StoredChunk(
                    index=self.base + plan.index,
                    start_sample=plan.start,
                    end_sample=plan.end,
                    request_key=self.key,
                    transcript=transcript,
                )
                await self.owner.save(self.job_id, chunk)
                self.results[plan.index] = transcript
                if self.on_chunk is not None:
                    await self.on_chunk(len(self.results), len(self.plans))
            except Exception as exc:  # noqa: BLE001 - collected, the most severe re-raised
                self.errors.append(exc)
            finally:
                path.unlink(missing_ok=True)

    @property
    def _encoding(self) -> str:
        limits = self.engine.limits
        return limits.chunk_encoding if limits is not None else "opus"

    def _chunk_path(self, plan: ChunkPlan) -> Path:
        tag = "" if self.channel is None else f"-ch{self.channel}"
        stem = self.named_after.stem
        return self.named_after.with_name(
            f"{stem}{tag}-chunk-{plan.index}.{chunk_extension(self._encoding)}"
        )

    def merged(self, total: int, *, timed: bool, overlapping: bool) -> Transcript:
        """The chunks' transcripts as one, with where each chunk lies in the metadata."""
        plans, results = self.plans, self.results
        parts = [
            ChunkTranscript(
                offset=p.start / SAMPLE_RATE, cut=p.cut / SAMPLE_RATE, transcript=results[p.index]
            )
            for p in plans
        ]
        metadata = EngineMetadata(
            chunks=tuple(
                ChunkInfo(
                    index=p.index,
                    start=round(p.start / SAMPLE_RATE, 3),
                    cut=round(p.cut / SAMPLE_RATE, 3),
                    end=round(p.end / SAMPLE_RATE, 3),
                    request_id=results[p.index].engine_metadata.request,
                )
                for p in plans
            ),
            chunks_reused=self.reused,
            raw_response={"chunks": [results[p.index].engine_metadata.raw_response for p in plans]},
        )
        return merge(
            parts,
            duration=total / SAMPLE_RATE,
            timed=timed,
            metadata=metadata,
            overlapping=overlapping,
        )


def _silence(engine: Engine, model: str, samples: int) -> Transcript:
    """A channel without a single turn of speech: nothing said, nothing sent."""
    return Transcript(
        text="",
        language=None,
        duration=round(samples / SAMPLE_RATE, 3),
        model=model,
        engine=engine.name,
        engine_metadata=EngineMetadata(chunks=(), turns=0),
    )


def most_severe(errors: list[BaseException]) -> BaseException:
    """Deleted beats auth beats permanent beats anything else: what the consumer should act
    on (nothing matters any more for a deleted job)."""
    for kind in (JobDeleted, EngineAuthError, PermanentEngineError):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]
