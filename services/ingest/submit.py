"""Accepting a job: one typed `Submission`, then four steps with explicit inputs and outputs.

    Submission.parse(form, headers)   validated once (services/ingest/submission.py)
    resolve  -> Origin                recording lookup / URL equal to a recording / upload
    claim    -> Claim | Accepted      de-duplication keys claimed, or the identical job's answer
    store    -> Stored                audio streamed to the object store under the claim
    record   -> Accepted              the job row and its AudioStored event, one transaction

Order matters for "nothing half-written": the object is stored first (invisible until a row
points at it); the row and its AudioStored outbox event commit together; if that commit fails or
loses a duplicate race, the object is deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import asyncpg
import structlog

from libs.apikeys import ApiKey
from libs.audio.limits import AudioLimits
from libs.audio.sniff import SNIFF_BYTES as HEAD_BYTES
from libs.audio.sniff import SUPPORTED, AudioFormat, sniff
from libs.blobstore import BlobStore
from libs.db import DatabaseUnavailable, DuplicateRow, MissingTable
from libs.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    SourceFailed,
    Unavailable,
    UnsupportedMedia,
)
from libs.jobs import claims
from libs.jobs import submission as jobs
from libs.jobs.record import Job
from libs.layout import MAX_KEY_BYTES, audio_key, loggable, oversized, transcript_keys
from libs.metrics import JOBS_SUBMITTED
from services.ingest import admission, bodies
from services.ingest.form import SubmitForm
from services.ingest.lookup import (
    AmbiguousRecording,
    LookupQueries,
    Recording,
    RecordingNotFound,
    campaign_name,
    find_by_url,
    find_recording,
    lookup_tenant,
)
from services.ingest.phone import to_e164
from services.ingest.submission import (
    MODELS,
    TIMESTAMPS,
    RecordingSource,
    Source,
    Submission,
    UploadSource,
    UrlSource,
)

log = structlog.get_logger()

__all__ = [
    "MODELS",
    "TIMESTAMPS",
    "Accepted",
    "SubmitContext",
    "accept",
    "check_object_keys",
    "claim_or_find",
    "object_stem",
    "record",
    "resolve",
    "store",
    "submit",
]


class AudioFetcher(Protocol):
    """Streams a remote URL's body (SSRF-checked, size-limited). Errors are libs.errors.DomainError."""

    def open(self, url: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    audio_file_id: str
    b2_key: str
    b2_url: str
    # The job an earlier identical submission made (same Idempotency-Key, or same prefix + URL):
    # answered with the header `Idempotent-Replayed: true`.
    existing: bool
    # An existing job whose callback_url differs from this request's: the job keeps its own.
    callback_url_ignored: bool = False

    def body(self) -> bodies.Accepted:
        body = bodies.Accepted(
            audio_file_id=self.audio_file_id,
            status="QUEUED",
            b2_key=self.b2_key,
            b2_url=self.b2_url,
        )
        if self.callback_url_ignored:
            body.callback_url_ignored = True
            body.detail = (
                "this is the existing job of an identical submission; it keeps the callback_url "
                "it was submitted with, the request's callback_url was not recorded"
            )
        return body

    def headers(self) -> dict[str, str]:
        return {"Idempotent-Replayed": "true"} if self.existing else {}


@dataclass(frozen=True, slots=True)
class SubmitContext:
    pool: asyncpg.Pool
    store: BlobStore
    fetcher: AudioFetcher
    queries: LookupQueries
    default_phone_region: str
    validate_callback: CallbackValidator
    # A claim lives this long unless its owner's heartbeat extends it (every third of it);
    # duplicates wait up to claim_wait for the owner's job, then get 409 + Retry-After.
    claim_ttl: float = 90.0
    claim_wait: float = 30.0
    # MAX_AUDIO_SECONDS and the sample rates accepted (services/ingest/admission.py).
    audio_limits: AudioLimits = field(default_factory=AudioLimits)


class CallbackValidator(Protocol):
    def __call__(self, url: str) -> None: ...


async def submit(
    ctx: SubmitContext,
    key: ApiKey,
    form: SubmitForm,
    *,
    idempotency_key: str | None,
    trace_id: str | None,
) -> Accepted:
    """Parse and validate the request once, then: resolve -> claim -> store -> record."""
    submission = Submission.parse(
        form,
        key,
        idempotency_key=idempotency_key,
        trace_id=trace_id,
        validate_callback=ctx.validate_callback,
    )
    return await accept(ctx, key, submission)


async def accept(ctx: SubmitContext, key: ApiKey, submission: Submission) -> Accepted:
    # A tenant key finds only its own recordings, by exact id (lookup.py's module docstring).
    origin = await resolve(ctx, submission, tenant=lookup_tenant(key))
    check_object_keys(submission, origin)
    fingerprint = await _fingerprint(submission)
    claim = await claim_or_find(ctx, key, submission, origin, fingerprint)
    if isinstance(claim, Accepted):
        return claim
    stored = await store(ctx, submission.source, origin, claim)
    return await record(ctx, key, submission, origin, claim, stored, fingerprint)


async def _fingerprint(submission: Submission) -> str | None:
    """The request fingerprint, needed only with an Idempotency-Key; an upload is identified by
    its content (sha256 of the spooled file, hashed off the event loop)."""
    if submission.idempotency_key is None:
        return None
    upload_sha256 = None
    if isinstance(submission.source, UploadSource):
        upload_sha256 = await asyncio.to_thread(_sha256_file, submission.source.upload.path)
    return submission.fingerprint(upload_sha256)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


_LONGEST_EXT = max((fmt.ext for fmt in SUPPORTED), key=len)


def check_object_keys(submission: Submission, origin: Origin) -> None:
    """Refuse, before anything is claimed or downloaded, a submission whose audio key or any of
    its transcript keys would exceed S3's key limit: the store would refuse it (a 503 for the
    client and an operator alarm) or the transcriber could never write the result."""
    stem = object_stem(
        prefix=submission.prefix,
        campaign=origin.campaign,
        phone=origin.phone,
        file_id=uuid.UUID(int=0),
    )
    audio = f"{stem}.{_LONGEST_EXT}"
    t = transcript_keys(audio, campaign=origin.campaign, prefix=submission.transcript_prefix)
    too_long = oversized([audio, t.json, t.txt, t.srt, t.vtt])
    if too_long:
        raise InvalidInput(
            f"the object key would be {len(too_long[0].encode())} bytes, over the "
            f"{MAX_KEY_BYTES} object storage allows; it is built from b2_prefix "
            f"({len(submission.prefix)} bytes) and campaign ({len(origin.campaign)} bytes): "
            "shorten them",
            code="object_key_too_long",
        )


# --- step 1: resolve the source -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the audio comes from and what is known about it (database first, form second)."""

    recording_id: str | None
    url: str | None
    url_sha1: str | None
    phone: str | None  # E.164, or None when unknown
    campaign: str  # "unassigned" when unknown
    campaign_id: str | None
    started: datetime | None
    stopped: datetime | None
    source_table: str | None
    source_row_id: int | None


async def resolve(ctx: SubmitContext, submission: Submission, *, tenant: str = "") -> Origin:
    """Look the recording up (by id, or a URL equal to a recording's location); fill the gaps
    from the form's fallbacks. `tenant`: whose recordings may be found ('' : every one)."""
    fallbacks = submission.fallbacks
    source = submission.source
    rec: Recording | None = None
    url: str | None = None
    if isinstance(source, RecordingSource):
        rec = await _find_recording(ctx, source.recording_id, tenant)
        url = rec.url
    elif isinstance(source, UrlSource):
        url = source.url
        rec = await find_by_url(ctx.pool, url, ctx.queries, tenant=tenant)
    # The database is the source of truth; form values are fallbacks only.
    phone_raw = (rec.phone if rec else None) or fallbacks.phone
    campaign = (rec.campaign_name if rec else None) or fallbacks.campaign
    campaign_id = (rec.campaign_id if rec else None) or fallbacks.campaign_id
    if campaign is None and campaign_id is not None:
        campaign = await campaign_name(ctx.pool, campaign_id, ctx.queries)
    return Origin(
        recording_id=rec.recording_id if rec else None,
        url=url,
        url_sha1=hashlib.sha1(url.encode()).hexdigest() if url else None,  # noqa: S324 - reference key, not security
        phone=to_e164(phone_raw, ctx.default_phone_region),
        campaign=campaign or "unassigned",
        campaign_id=campaign_id,
        started=rec.started if rec else None,
        stopped=rec.stopped if rec else None,
        source_table="public.recordings" if rec else None,
        source_row_id=rec.source_row_id if rec else None,
    )


async def _find_recording(ctx: SubmitContext, recording_id: str, tenant: str) -> Recording:
    try:
        return await find_recording(ctx.pool, recording_id, ctx.queries, tenant=tenant)
    except RecordingNotFound as exc:
        raise NotFound(str(exc), code="recording_not_found") from exc
    except AmbiguousRecording as exc:
        raise Conflict(str(exc), code="ambiguous_recording") from exc
    except MissingTable as exc:
        raise SourceFailed(
            "the recordings source tables do not exist here", code="lookup_unavailable"
        ) from exc


# --- step 2: claim (de-duplication) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """Ours to store: the job id, the object key without extension and the claimed keys."""

    file_id: uuid.UUID
    stem: str
    dedup: Dedup


async def claim_or_find(
    ctx: SubmitContext,
    key: ApiKey,
    submission: Submission,
    origin: Origin,
    fingerprint: str | None = None,
) -> Claim | Accepted:
    """Claim the submission's de-duplication keys, or answer the identical job that exists (or
    finishes while we wait)."""
    file_id = uuid.uuid4()
    stem = object_stem(
        prefix=submission.prefix, campaign=origin.campaign, phone=origin.phone, file_id=file_id
    )
    dedup = Dedup(
        api_key_id=uuid.UUID(key.id),
        prefix=submission.prefix,
        url_sha1=origin.url_sha1,
        idempotency_key=submission.idempotency_key,
    )
    claim = Claim(file_id=file_id, stem=stem, dedup=dedup)
    existing = await _claim_or_wait(ctx, claim)
    if existing is not None:
        return _existing(existing, ctx, submission, fingerprint)
    return claim


@dataclass(frozen=True, slots=True)
class Dedup:
    """What makes two submissions the same job: the Idempotency-Key, or prefix + URL."""

    api_key_id: uuid.UUID
    prefix: str
    url_sha1: str | None
    idempotency_key: str | None

    def keys(self) -> list[str]:
        return claims.dedup_keys(
            prefix=self.prefix, url_sha1=self.url_sha1, idempotency_key=self.idempotency_key
        )

    async def find(self, pool: asyncpg.Pool) -> Job | None:
        return await jobs.find_existing(
            pool,
            self.api_key_id,
            prefix=self.prefix,
            url_sha1=self.url_sha1,
            idempotency_key=self.idempotency_key,
        )


async def _claim_or_wait(ctx: SubmitContext, claim: Claim) -> Job | None:
    """Claim the de-duplication keys, or wait for the submission holding them to finish and
    return its job. None means: ours to download."""
    dedup = claim.dedup
    keys = dedup.keys()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.claim_wait
    delay = 0.02
    while True:
        if await claims.claim(
            ctx.pool,
            api_key_id=dedup.api_key_id,
            audio_file_id=claim.file_id,
            object_stem=claim.stem,
            keys=keys,
            ttl_seconds=ctx.claim_ttl,
        ):
            if not keys:
                return None
            # The holder may have committed and released between our first look and our claim.
            existing = await dedup.find(ctx.pool)
            if existing is not None:
                await claims.release(ctx.pool, claim.file_id)
            return existing
        existing = await dedup.find(ctx.pool)
        if existing is not None:
            return existing
        held = await claims.holders(ctx.pool, dedup.api_key_id, keys)
        if any(h.expired for h in held):
            # Its owner died mid-submit: clear what it left, then claim again.
            await claims.sweep(ctx.pool, ctx.store)
            continue
        if held:
            if loop.time() > deadline:
                raise Conflict(
                    "an identical submission is still being stored; retry to get its job",
                    code="submission_in_progress",
                    retry_after=5,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


# --- step 3: store the audio ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    object_key: str
    content_type: str
    size: int
    sha256: str


async def store(ctx: SubmitContext, source: Source, origin: Origin, claim: Claim) -> Stored:
    """Stream the upload, or download the origin's URL, to the object store while a heartbeat
    keeps the claim alive. On any failure, whatever may have been written is deleted and the
    claim released."""
    # Keys whose PUT began: a PUT can succeed server-side and still fail here.
    attempted: list[str] = []
    heartbeat = asyncio.create_task(claims.keep_alive(ctx.pool, claim.file_id, ctx.claim_ttl))
    try:
        match source:
            case UploadSource(upload=upload):
                try:
                    stored = await _store_upload(ctx, upload.path, claim.stem, attempted.append)
                finally:
                    upload.discard()
            case RecordingSource() | UrlSource():
                assert origin.url is not None  # resolve() gave it one
                stored = await _store_url(ctx, origin.url, claim.stem, attempted.append)
    except BaseException:
        heartbeat.cancel()
        await _abandon(ctx, claim.file_id, attempted)
        raise
    heartbeat.cancel()
    return stored


# --- step 4: record the job (row + AudioStored event in one transaction) --------------------


async def record(
    ctx: SubmitContext,
    key: ApiKey,
    submission: Submission,
    origin: Origin,
    claim: Claim,
    stored: Stored,
    fingerprint: str | None = None,
) -> Accepted:
    """Commit the job row with its outbox event; if that fails or loses a duplicate race, the
    stored object is deleted again."""
    job = _new_job(ctx, key, submission, origin, claim, stored, fingerprint)
    written = [stored.object_key]
    kind = submission.source.kind
    try:
        await jobs.insert_job(ctx.pool, job)
    except DuplicateRow:
        # Only reachable when a duplicate bypassed the claims (e.g. a row written by an older
        # version); keep theirs, drop our copy.
        await _abandon(ctx, claim.file_id, written)
        winner = await claim.dedup.find(ctx.pool)
        if winner is None:
            raise
        return _existing(winner, ctx, submission, fingerprint)
    except claims.ClaimLost as exc:
        await _abandon(ctx, claim.file_id, written)
        raise Unavailable(
            "the submission took longer than its claim allows; retry",
            code="submission_expired",
            retry_after=5,
        ) from exc
    except BaseException:
        await _abandon(ctx, claim.file_id, written)
        raise
    JOBS_SUBMITTED.labels(source=kind, outcome="accepted").inc()
    log.info(
        "job_accepted",
        audio_file_id=str(claim.file_id),
        key=job.object_key,
        size=job.size,
        source=kind,
    )
    return Accepted(
        audio_file_id=str(claim.file_id),
        b2_key=job.object_key,
        b2_url=ctx.store.url_for(job.object_key),
        existing=False,
    )


def _new_job(
    ctx: SubmitContext,
    key: ApiKey,
    submission: Submission,
    origin: Origin,
    claim: Claim,
    stored: Stored,
    fingerprint: str | None,
) -> jobs.NewJob:
    options, fallbacks = submission.options, submission.fallbacks
    return jobs.NewJob(
        id=claim.file_id,
        api_key_id=key.id,
        tenant_prefix=submission.prefix,
        phone=origin.phone,
        campaign_name=origin.campaign,
        campaign_id=origin.campaign_id,
        company=fallbacks.company,
        recording_id=origin.recording_id,
        url=origin.url,
        url_sha1=origin.url_sha1,
        idempotency_key=submission.idempotency_key,
        started=origin.started,
        stopped=origin.stopped,
        bucket=ctx.store.bucket,
        object_key=stored.object_key,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        source_table=origin.source_table,
        source_row_id=origin.source_row_id,
        callback_url=submission.callback_url,
        model=options.model,
        language=options.language,
        timestamps=options.timestamps,
        multichannel=options.multichannel,
        # The job's own map, else its key's (tenant's); None leaves the transcriber's default.
        channel_roles=options.channel_roles or key.channel_roles,
        trace_id=submission.trace_id,
        transcript_prefix=submission.transcript_prefix,
        request_sha256=fingerprint,
        prompt=options.prompt,
        audio_ttl_seconds=submission.retention.audio_ttl,
        transcript_ttl_seconds=submission.retention.transcript_ttl,
        redact=options.redact,
    )


def object_stem(*, prefix: str, campaign: str, phone: str | None, file_id: uuid.UUID) -> str:
    """The audio key without its extension (known only once the content is sniffed)."""
    return audio_key(
        prefix=prefix, campaign=campaign, phone=phone, file_id=str(file_id), ext="bin"
    ).removesuffix(".bin")


def _existing(
    job: Job, ctx: SubmitContext, submission: Submission, fingerprint: str | None
) -> Accepted:
    """The answer for a job an identical submission made. The same Idempotency-Key with a
    different request (fingerprint) is refused; a different callback_url is reported, never
    silently dropped."""
    key = submission.idempotency_key
    if (
        key is not None
        and job.idempotency_key == key
        and job.request_sha256 is not None
        and fingerprint is not None
        and job.request_sha256 != fingerprint
    ):
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request (source, b2_prefix, options "
            "or form fields); use a new key for a new request"
        )
    JOBS_SUBMITTED.labels(source=submission.source.kind, outcome="existing").inc()
    return Accepted(
        audio_file_id=str(job.id),
        b2_key=job.object_key,
        b2_url=ctx.store.url_for(job.object_key),
        existing=True,
        callback_url_ignored=(
            submission.callback_url is not None and submission.callback_url != job.callback_url
        ),
    )


async def _abandon(ctx: SubmitContext, file_id: uuid.UUID, written: list[str]) -> None:
    """Undo a submission that will not become a job: delete its object, then its claims. If
    either step fails, the claims stay and expire, and the sweep finishes the job."""
    try:
        for object_key in written:
            await ctx.store.delete(object_key)
    except Exception:
        names = [loggable(k) for k in written]  # the keys' paths name the phone
        log.warning("orphan_object_delete_failed", objects=names, exc_info=True)
        with contextlib.suppress(DatabaseUnavailable):
            await claims.expire_now(ctx.pool, file_id)
        return
    try:
        await claims.release(ctx.pool, file_id)
    except DatabaseUnavailable:
        log.warning("claim_release_failed", audio_file_id=str(file_id), exc_info=True)


def _require_audio(head: bytes) -> AudioFormat:
    fmt = sniff(head)
    if fmt is None:
        raise UnsupportedMedia(
            "the content is not a recognised audio format (wav, mp3, m4a/mp4, ogg/opus, flac, webm, amr)"
        )
    return fmt


async def _with_head(
    chunks: AsyncIterator[bytes], want: int = HEAD_BYTES
) -> tuple[bytes, AsyncIterator[bytes]]:
    """Read `want` bytes (or all there are) to sniff the format and read the header, then
    replay them ahead of the rest."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= want:
            break

    async def replay() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in chunks:
            yield chunk

    return head, replay()


async def _store_url(
    ctx: SubmitContext, url: str, stem: str, attempting: Callable[[str], None]
) -> Stored:
    async with ctx.fetcher.open(url) as chunks:
        head, body = await _with_head(chunks, admission.HEADER_BYTES)
        if not head:
            raise SourceFailed("the URL returned an empty body", code="empty_download")
        fmt = _require_audio(head)
        body = admission.check_stream(head, body, ctx.audio_limits)
        key = f"{stem}.{fmt.ext}"
        attempting(key)
        stored = await ctx.store.put_stream(key, body, fmt.content_type)
    return Stored(stored.key, fmt.content_type, stored.size, stored.sha256)


async def _store_upload(
    ctx: SubmitContext, path: Path, stem: str, attempting: Callable[[str], None]
) -> Stored:
    with path.open("rb") as fh:
        fmt = _require_audio(fh.read(HEAD_BYTES))
        await asyncio.to_thread(admission.check_file, fh, ctx.audio_limits)
        fh.seek(0)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := fh.read(1024 * 1024):
                yield chunk

        key = f"{stem}.{fmt.ext}"
        attempting(key)
        stored = await ctx.store.put_stream(key, chunks(), fmt.content_type)
    return Stored(stored.key, fmt.content_type, stored.size, stored.sha256)
