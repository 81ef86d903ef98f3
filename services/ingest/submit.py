"""Accepting a job: resolve the recording, store the audio, then the row + event in one transaction.

Order matters for "nothing half-written": the object is stored first (invisible until a row
points at it); the row and its AudioStored outbox event commit together; if that commit fails or
loses a duplicate race, the object is deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
import structlog

from libs.apikeys import ApiKey
from libs.audio.sniff import SNIFF_BYTES as HEAD_BYTES
from libs.audio.sniff import AudioFormat, sniff
from libs.blobstore import BlobStore
from libs.db import DatabaseUnavailable
from libs.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SourceFailed,
    Unavailable,
    UnsupportedMedia,
)
from libs.jobs import claims
from libs.jobs import submission as jobs
from libs.layout import InvalidPrefix, audio_key, validate_prefix
from libs.metrics import JOBS_SUBMITTED
from services.ingest.form import SubmitForm
from services.ingest.lookup import (
    AmbiguousRecording,
    LookupQueries,
    RecordingNotFound,
    campaign_name,
    find_by_url,
    find_recording,
)
from services.ingest.phone import to_e164

log = structlog.get_logger()

MODELS = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "offline"})
TIMESTAMPS = frozenset({"none", "segment", "word"})


class AudioFetcher(Protocol):
    """Streams a remote URL's body (SSRF-checked, size-limited). Errors are libs.errors.DomainError."""

    def open(self, url: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    audio_file_id: str
    b2_key: str
    b2_url: str
    existing: bool

    def body(self) -> dict[str, str]:
        return {
            "audio_file_id": self.audio_file_id,
            "status": "QUEUED",
            "b2_key": self.b2_key,
            "b2_url": self.b2_url,
        }


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


class CallbackValidator(Protocol):
    def __call__(self, url: str) -> None: ...


def _choose_prefix(form: SubmitForm, key: ApiKey) -> str:
    requested = form.get("b2_prefix")
    try:
        prefix = validate_prefix(requested if requested is not None else key.tenant_prefix)
    except InvalidPrefix as exc:
        raise InvalidInput(str(exc), code="invalid_b2_prefix") from exc
    bound = key.tenant_prefix.strip("/")
    # A tenant key may write only inside its own area.
    outside = prefix != bound and not prefix.startswith(bound + "/")
    if requested is not None and bound and not key.is_bootstrap and outside:
        raise Forbidden(f"this key may only use b2_prefix {bound!r}", code="prefix_not_allowed")
    return prefix


def _options(form: SubmitForm) -> tuple[str | None, str | None, str]:
    model = form.get("model")
    if model is not None and model not in MODELS:
        raise InvalidInput(f"model must be one of {sorted(MODELS)}", code="invalid_model")
    language = form.get("language")
    if language is not None and not (
        2 <= len(language) <= 8 and language.replace("-", "").isalpha()
    ):
        raise InvalidInput("language must be an ISO-639 code such as 'en'", code="invalid_language")
    timestamps = form.get("timestamps") or "segment"
    if timestamps not in TIMESTAMPS:
        raise InvalidInput(
            f"timestamps must be one of {sorted(TIMESTAMPS)}", code="invalid_timestamps"
        )
    return model, language, timestamps


async def submit(
    ctx: SubmitContext,
    key: ApiKey,
    form: SubmitForm,
    *,
    idempotency_key: str | None,
    trace_id: str | None,
) -> Accepted:
    sources = [n for n in ("recording_id", "url") if form.get(n) is not None]
    if form.upload is not None:
        sources.append("file")
    if "recording_id" in form.fields and form.get("recording_id") is None and not sources:
        raise InvalidInput("recording_id is empty", code="empty_recording_id")
    if len(sources) != 1:
        raise InvalidInput(
            "provide exactly one of recording_id, url or file", code="exactly_one_source"
        )
    source = sources[0]
    prefix = _choose_prefix(form, key)
    model, language, timestamps = _options(form)
    callback_url = form.get("callback_url")
    if callback_url is not None:
        ctx.validate_callback(callback_url)
    if idempotency_key is not None and not (1 <= len(idempotency_key) <= 200):
        raise InvalidInput(
            "Idempotency-Key must be 1-200 characters", code="invalid_idempotency_key"
        )

    phone_raw = form.get("phone")
    campaign = form.get("campaign")
    campaign_id = form.get("campaign_id")
    recording_id: str | None = None
    url: str | None = None
    started = stopped = None
    source_row_id: int | None = None
    source_table: str | None = None

    try:
        if source == "recording_id":
            rid = form.get("recording_id") or ""
            try:
                rec = await find_recording(ctx.pool, rid, ctx.queries)
            except RecordingNotFound as exc:
                raise NotFound(str(exc), code="recording_not_found") from exc
            except AmbiguousRecording as exc:
                raise Conflict(str(exc), code="ambiguous_recording") from exc
            except asyncpg.exceptions.UndefinedTableError as exc:
                raise SourceFailed(
                    "the recordings source tables do not exist here", code="lookup_unavailable"
                ) from exc
            recording_id, url = rec.recording_id, rec.url
            # The database is the source of truth; form values are fallbacks only.
            phone_raw = rec.phone or phone_raw
            campaign = rec.campaign_name or campaign
            campaign_id = rec.campaign_id or campaign_id
            started, stopped = rec.started, rec.stopped
            source_row_id = rec.source_row_id
            source_table = "public.recordings"
        elif source == "url":
            url = form.get("url")
            assert url is not None
            known = await find_by_url(ctx.pool, url, ctx.queries)
            if known is not None:
                recording_id = known.recording_id
                phone_raw = known.phone or phone_raw
                campaign = known.campaign_name or campaign
                campaign_id = known.campaign_id or campaign_id
                started, stopped = known.started, known.stopped
                source_row_id = known.source_row_id
                source_table = "public.recordings"
        if campaign is None and campaign_id is not None:
            campaign = await campaign_name(ctx.pool, campaign_id, ctx.queries)

        url_sha1 = hashlib.sha1(url.encode()).hexdigest() if url else None  # noqa: S324 - reference key, not security
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(str(exc)) from exc

    file_id = uuid.uuid4()
    phone = to_e164(phone_raw, ctx.default_phone_region)
    campaign_final = campaign or "unassigned"
    stem = object_stem(prefix=prefix, campaign=campaign_final, phone=phone, file_id=file_id)
    try:
        existing = await _claim_or_wait(
            ctx,
            key,
            file_id,
            stem,
            claims.dedup_keys(prefix=prefix, url_sha1=url_sha1, idempotency_key=idempotency_key),
            prefix=prefix,
            url_sha1=url_sha1,
            idempotency_key=idempotency_key,
        )
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    if existing is not None:
        return _existing(existing, ctx, source)

    written: list[str] = []
    heartbeat = asyncio.create_task(claims.keep_alive(ctx.pool, file_id, ctx.claim_ttl))
    try:
        if source == "file":
            assert form.upload is not None
            try:
                fmt, stored = await _store_upload(ctx, form.upload.path, stem, written)
            finally:
                form.upload.discard()
        else:
            assert url is not None
            fmt, stored = await _store_url(ctx, url, stem, written)
    except BaseException:
        heartbeat.cancel()
        await _abandon(ctx, file_id, written)
        raise
    heartbeat.cancel()

    job = jobs.NewJob(
        id=file_id,
        api_key_id=key.id,
        tenant_prefix=prefix,
        phone=phone,
        campaign_name=campaign_final,
        campaign_id=campaign_id,
        company=form.get("company"),
        recording_id=recording_id,
        url=url,
        url_sha1=url_sha1,
        idempotency_key=idempotency_key,
        started=started,
        stopped=stopped,
        bucket=ctx.store.bucket,
        object_key=stored[0],
        content_type=fmt.content_type,
        size=stored[1],
        sha256=stored[2],
        source_table=source_table,
        source_row_id=source_row_id,
        callback_url=callback_url,
        model=model,
        language=language,
        timestamps=timestamps,
        trace_id=trace_id,
    )
    try:
        await jobs.insert_job(ctx.pool, job)
    except asyncpg.exceptions.UniqueViolationError:
        # Only reachable when a duplicate bypassed the claims (e.g. a row written by an older
        # version); keep theirs, drop our copy.
        await _abandon(ctx, file_id, written)
        winner = await _find_existing(ctx, key, prefix, url_sha1, idempotency_key)
        if winner is None:
            raise
        return _existing(winner, ctx, source)
    except claims.ClaimLost as exc:
        await _abandon(ctx, file_id, written)
        raise Unavailable(
            "the submission took longer than its claim allows; retry",
            code="submission_expired",
            retry_after=5,
        ) from exc
    except DatabaseUnavailable as exc:
        await _abandon(ctx, file_id, written)
        raise DatabaseUnavailable(str(exc)) from exc
    except BaseException:
        await _abandon(ctx, file_id, written)
        raise
    JOBS_SUBMITTED.labels(source=source, outcome="accepted").inc()
    log.info(
        "job_accepted", audio_file_id=str(file_id), key=job.object_key, size=job.size, source=source
    )
    return Accepted(
        audio_file_id=str(file_id),
        b2_key=job.object_key,
        b2_url=ctx.store.url_for(job.object_key),
        existing=False,
    )


def object_stem(*, prefix: str, campaign: str, phone: str | None, file_id: uuid.UUID) -> str:
    """The audio key without its extension (known only once the content is sniffed)."""
    return audio_key(
        prefix=prefix, campaign=campaign, phone=phone, file_id=str(file_id), ext="bin"
    ).removesuffix(".bin")


def _existing(row: asyncpg.Record, ctx: SubmitContext, source: str) -> Accepted:
    JOBS_SUBMITTED.labels(source=source, outcome="existing").inc()
    return Accepted(
        audio_file_id=str(row["id"]),
        b2_key=row["b2_object_key"],
        b2_url=ctx.store.url_for(row["b2_object_key"]),
        existing=True,
    )


async def _claim_or_wait(
    ctx: SubmitContext,
    key: ApiKey,
    file_id: uuid.UUID,
    stem: str,
    keys: list[str],
    *,
    prefix: str,
    url_sha1: str | None,
    idempotency_key: str | None,
) -> asyncpg.Record | None:
    """Claim the de-duplication keys, or wait for the submission holding them to finish and
    return its job. None means: ours to download."""
    key_id = uuid.UUID(key.id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.claim_wait
    delay = 0.02
    while True:
        if await claims.claim(
            ctx.pool,
            api_key_id=key_id,
            audio_file_id=file_id,
            object_stem=stem,
            keys=keys,
            ttl_seconds=ctx.claim_ttl,
        ):
            if not keys:
                return None
            # The holder may have committed and released between our first look and our claim.
            existing = await _find_existing(ctx, key, prefix, url_sha1, idempotency_key)
            if existing is not None:
                await claims.release(ctx.pool, file_id)
            return existing
        existing = await _find_existing(ctx, key, prefix, url_sha1, idempotency_key)
        if existing is not None:
            return existing
        held = await claims.holders(ctx.pool, key_id, keys)
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


async def _find_existing(
    ctx: SubmitContext, key: ApiKey, prefix: str, url_sha1: str | None, idempotency_key: str | None
) -> asyncpg.Record | None:
    if idempotency_key is not None:
        row = await ctx.pool.fetchrow(
            jobs.FIND_BY_IDEMPOTENCY_KEY, uuid.UUID(key.id), idempotency_key
        )
        if row is not None:
            return row
    if url_sha1 is not None:
        return await ctx.pool.fetchrow(jobs.FIND_BY_URL, uuid.UUID(key.id), prefix, url_sha1)
    return None


async def _abandon(ctx: SubmitContext, file_id: uuid.UUID, written: list[str]) -> None:
    """Undo a submission that will not become a job: delete its object, then its claims. If
    either step fails, the claims stay and expire, and the sweep finishes the job."""
    try:
        for object_key in written:
            await ctx.store.delete(object_key)
    except Exception:
        log.warning("orphan_object_delete_failed", keys=written, exc_info=True)
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


async def _with_head(chunks: AsyncIterator[bytes]) -> tuple[bytes, AsyncIterator[bytes]]:
    """Read enough bytes to sniff the format, then replay them ahead of the rest."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= HEAD_BYTES:
            break

    async def replay() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in chunks:
            yield chunk

    return head, replay()


async def _store_url(
    ctx: SubmitContext, url: str, stem: str, written: list[str]
) -> tuple[AudioFormat, tuple[str, int, str]]:
    async with ctx.fetcher.open(url) as chunks:
        head, body = await _with_head(chunks)
        if not head:
            raise SourceFailed("the URL returned an empty body", code="empty_download")
        fmt = _require_audio(head)
        key = f"{stem}.{fmt.ext}"
        # Recorded before the upload: a PUT can succeed server-side and still fail here.
        written.append(key)
        stored = await ctx.store.put_stream(key, body, fmt.content_type)
    return fmt, (stored.key, stored.size, stored.sha256)


async def _store_upload(
    ctx: SubmitContext, path: Path, stem: str, written: list[str]
) -> tuple[AudioFormat, tuple[str, int, str]]:
    with path.open("rb") as fh:
        fmt = _require_audio(fh.read(HEAD_BYTES))
        fh.seek(0)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := fh.read(1024 * 1024):
                yield chunk

        key = f"{stem}.{fmt.ext}"
        written.append(key)
        stored = await ctx.store.put_stream(key, chunks(), fmt.content_type)
    return fmt, (stored.key, stored.size, stored.sha256)
