"""The reference job endpoints: submit, status, rerun, transcript downloads."""

from __future__ import annotations

import uuid

from aiohttp import web

from libs import params
from libs.blobstore import BlobNotFound
from libs.errors import Conflict, InvalidInput, NotFound
from libs.jobs import deletion, record, requeue, speakers, views
from services.ingest import bodies
from services.ingest.context import (
    POOL,
    SETTINGS,
    STORE,
    SUBMIT_CTX,
    TRACE_ID,
    authenticate,
    job_id,
    tenant_scope,
)
from services.ingest.form import parse_submit_form
from services.ingest.openapi import (
    DATE_TIME,
    UUID,
    ApiRoutes,
    Form,
    Reply,
    in_header,
    in_path,
    in_query,
)
from services.ingest.status import status_body
from services.ingest.submit import submit

FORMATS = {
    "json": ("b2_transcript_json_key", "application/json"),
    "txt": ("b2_transcript_txt_key", "text/plain; charset=utf-8"),
    "srt": ("b2_transcript_srt_key", "application/x-subrip"),
    "vtt": ("b2_transcript_vtt_key", "text/vtt; charset=utf-8"),
}
TRANSCRIPT_MEDIA = {
    "text/plain": {"type": "string"},
    "application/json": {"type": "object"},
    "application/x-subrip": {"type": "string"},
    "text/vtt": {"type": "string"},
}

ROUTES = ApiRoutes("jobs")
JOB_ID = in_path("audio_file_id", "the job", UUID)
NO_SUCH_JOB = "no such job for this key"


@ROUTES.post(
    "/api/media/transcribe",
    operation_id="submit",
    summary="Submit a recording (exactly one of recording_id, url, file)",
    params=[
        in_header(
            "Idempotency-Key",
            "a retry with the same key and the same request returns the same job (header "
            "Idempotent-Replayed: true); the same key with a different request is 422",
            bodies.IDEMPOTENCY_KEY_SCHEMA,
        )
    ],
    form=Form(bodies.SubmitFields, upload="file", one_of=("recording_id", "url")),
    responses={
        200: Reply(
            "accepted (or the existing job for the same URL / key, with the header "
            "Idempotent-Replayed: true)",
            bodies.Accepted,
            headers={
                "Idempotent-Replayed": "'true' when the answer is the existing job of an "
                "identical earlier submission (same Idempotency-Key and request, or same "
                "b2_prefix + url); absent for a new job"
            },
        ),
        400: "bad form (a value not UTF-8, with control characters, too long or repeated: "
        "`invalid_field`, `field_too_long`, `duplicate_field`, `invalid_multipart`, ...), URL "
        "refused (SSRF guard), invalid b2_prefix or option, a field too long to store "
        "(field_too_long) or an object key over 1024 bytes (object_key_too_long)",
        403: "b2_prefix outside the key's tenant prefix",
        404: "recording_id not found",
        408: "the body did not arrive within INGEST_BODY_READ_TIMEOUT (`body_read_timeout`)",
        409: "recording_id matches several recordings, or an identical submission is still "
        "in progress",
        413: "the recording exceeds MAX_UPLOAD_BYTES, or its header says it is longer than "
        "MAX_AUDIO_SECONDS (`audio_too_long`)",
        415: "not a recognised audio format, or not a form content type, or its header's "
        "sample rate is outside 2,000-384,000 Hz (`unsupported_sample_rate`)",
        422: "the download failed (upstream status, timeout, empty body), or the "
        "Idempotency-Key was used for a different request (idempotency_key_reused)",
    },
)
async def post_transcribe(request: web.Request) -> web.Response:
    key = await authenticate(request)
    settings = request.app[SETTINGS]
    form = await parse_submit_form(
        request,
        max_upload_bytes=settings.max_upload_bytes,
        spool_dir=settings.ingest_spool_dir,
        read_timeout=settings.ingest_body_read_timeout,
    )
    try:
        accepted = await submit(
            request.app[SUBMIT_CTX],
            key,
            form,
            idempotency_key=request.headers.get("Idempotency-Key"),
            trace_id=request[TRACE_ID],
        )
    finally:
        if form.upload:
            form.upload.discard()
    return bodies.answer(accepted.body(), headers=accepted.headers())


@ROUTES.get(
    "/api/media/status/{audio_file_id}",
    operation_id="status",
    summary="Job status, transcript and metadata",
    params=[JOB_ID],
    responses={200: Reply("the job", bodies.Status), 404: NO_SUCH_JOB},
)
async def get_status(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await views.status(request.app[POOL], job_id(request), tenant_scope(key))
    if row is None:
        raise NotFound("no such job")
    return bodies.answer(status_body(row))


LIST_DEFAULT_LIMIT = 50
LIST_MAX_LIMIT = 200
# ?status= -> the states it means.
LIST_STATES: dict[str, tuple[str, ...]] = {
    "pending": ("queued", "processing"),
    "queued": ("queued",),
    "processing": ("processing",),
    "completed": ("completed",),
    "failed": ("failed",),
    "deleted": ("deleted",),
}
CAMPAIGN_MAX = 256


@ROUTES.get(
    "/api/media/jobs",
    operation_id="listJobs",
    summary="The key's jobs, newest first, cursor-paginated (items: the status body)",
    params=[
        in_query(
            "status",
            "pending (= queued or processing), a state, completed, failed or deleted",
            {"type": "string", "enum": sorted(LIST_STATES)},
        ),
        in_query("since", "jobs created at or after this time (ISO 8601)", DATE_TIME),
        in_query("until", "jobs created before this time (ISO 8601)", DATE_TIME),
        in_query("campaign", "exact campaign name", {"type": "string", "maxLength": CAMPAIGN_MAX}),
        in_query(
            "limit",
            f"jobs per page (default {LIST_DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": LIST_MAX_LIMIT},
        ),
        in_query("cursor", "next_cursor of the previous page"),
    ],
    responses={
        200: Reply("a page of jobs", bodies.JobList),
        400: "status, since, until, campaign, limit or cursor malformed "
        "(`invalid_<name>`, `field_too_long`)",
    },
)
async def get_jobs(request: web.Request) -> web.Response:
    """A page of the caller's own jobs. Keyset pagination on (created_at, id): a job submitted
    while a client pages through never shifts or repeats an item."""
    key = await authenticate(request)
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in LIST_STATES:
        raise InvalidInput(f"status must be one of {sorted(LIST_STATES)}", code="invalid_status")
    campaign = q.get("campaign") or None
    if campaign is not None and len(campaign.encode()) > CAMPAIGN_MAX:
        raise InvalidInput(f"campaign is longer than {CAMPAIGN_MAX} bytes", code="invalid_campaign")
    limit = params.parse_int(
        q.get("limit"), "limit", default=LIST_DEFAULT_LIMIT, low=1, high=LIST_MAX_LIMIT
    )
    where = views.ListFilter(
        states=LIST_STATES[status] if status else None,
        since=params.parse_time(q.get("since"), "since", required=False),
        until=params.parse_time(q.get("until"), "until", required=False),
        campaign=campaign,
        after=params.parse_cursor(q.get("cursor")),
    )
    # One more than the page: whether there is a next page, without a count query.
    rows = await views.list_jobs(request.app[POOL], tenant_scope(key), where, limit=limit + 1)
    page = rows[:limit]
    next_cursor = (
        params.encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    )
    return bodies.answer(
        bodies.JobList(jobs=[status_body(row) for row in page], next_cursor=next_cursor)
    )


@ROUTES.delete(
    "/api/media/{audio_file_id}",
    operation_id="deleteJob",
    summary="Delete a job: every object it stored, and its personal data (a tombstone stays)",
    params=[JOB_ID],
    responses={
        200: Reply(
            "deleted, every object removed (also the answer to a repeated DELETE)", bodies.Deleted
        ),
        202: Reply(
            "deleted; object storage is unreachable, so its objects are removed later "
            "(the deletion is recorded and finishes on its own)",
            bodies.Deleted,
        ),
        404: NO_SUCH_JOB,
    },
)
async def delete_job(request: web.Request) -> web.Response:
    """Idempotent. A job still queued or running is cancelled: the transcriber acks its message
    without work and no completion is announced; a `transcription.deleted` webhook is."""
    key = await authenticate(request)
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        outcome = await deletion.request(
            conn,
            job_id(request),
            api_key_id=uuid.UUID(key.id),
            requested_by=f"key:{key.id}",
            reason="api",
            trace_id=request[TRACE_ID],
        )
    if outcome is None:
        raise NotFound("no such job")
    deleted, _made_now = outcome
    removed = deleted.objects_removed
    if not removed:
        removed = await deletion.finish(pool, request.app[STORE], deleted.audio_file_id)
    body = bodies.Deleted(
        audio_file_id=str(deleted.audio_file_id),
        status="deleted",
        deleted_at=deleted.deleted_at.isoformat(),
        deleted_by=deleted.requested_by,
        objects_removed=removed,
    )
    return bodies.answer(body, status=200 if removed else 202)


@ROUTES.post(
    "/api/media/rerun/{audio_file_id}",
    operation_id="rerun",
    summary="Requeue a completed or failed job for a new transcription",
    params=[
        JOB_ID,
        in_query(
            "force",
            "requeue even a job that is still queued or running (true/false, 1/0, yes/no)",
            {"type": "boolean"},
        ),
    ],
    responses={
        200: Reply("requeued", bodies.Requeued),
        400: "force is not a boolean",
        404: NO_SUCH_JOB,
        409: "the job is still queued or running (use force=true), deleted (job_deleted), or "
        "its audio was removed by retention (audio_expired)",
    },
)
async def post_rerun(request: web.Request) -> web.Response:
    """Requeue a finished job for a new transcription. A job still queued or running is left
    alone (409) unless `?force=true`: it is about to produce a result anyway, and a second event
    would transcribe it twice."""
    key = await authenticate(request)
    force = params.parse_bool(request.query.get("force"), "force")
    pool = request.app[POOL]
    job = await record.load(pool, job_id(request), api_key_id=uuid.UUID(key.id))
    if job is None:
        raise NotFound("no such job")
    async with pool.acquire() as conn:
        requeued = await requeue.requeue(
            conn, job.id, trace_id=request[TRACE_ID], even_if_active=force
        )
    if requeued is None and job.status == "deleted":
        raise Conflict("the job was deleted", code="job_deleted")
    if requeued is None:
        raise Conflict(
            f"the job is {job.status}; it will finish on its own (add ?force=true to requeue anyway)",
            code="job_active",
        )
    return bodies.answer(bodies.Requeued(audio_file_id=str(job.id), status="QUEUED"))


_TRANSCRIPT_ERRORS: dict[int, str] = {
    400: "unknown format",
    404: NO_SUCH_JOB,
    409: "the transcript is not ready yet, or the job was deleted (job_deleted)",
}


@ROUTES.get(
    "/api/media/transcript/{audio_file_id}",
    operation_id="transcriptByQuery",
    summary="Download the transcript; ?format=txt|json|srt|vtt (default txt)",
    params=[JOB_ID, in_query("format", schema={"type": "string", "enum": sorted(FORMATS)})],
    responses={200: Reply("the transcript file", media=TRANSCRIPT_MEDIA), **_TRANSCRIPT_ERRORS},
)
# Registered before the route above (decorators apply bottom-up): `.{fmt}` must match first.
@ROUTES.get(
    "/api/media/transcript/{audio_file_id}.{fmt}",
    operation_id="transcript",
    summary="Download the transcript as txt, json, srt or vtt",
    params=[JOB_ID, in_path("fmt", schema={"type": "string", "enum": sorted(FORMATS)})],
    responses={200: Reply("the transcript file", media=TRANSCRIPT_MEDIA), **_TRANSCRIPT_ERRORS},
)
async def get_transcript(request: web.Request) -> web.Response:
    key = await authenticate(request)
    fmt = request.match_info.get("fmt") or request.query.get("format", "txt")
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {sorted(FORMATS)}", code="invalid_format")
    row = await views.status(request.app[POOL], job_id(request), tenant_scope(key))
    if row is None:
        raise NotFound("no such job")
    if row.status == "deleted":
        raise Conflict("the job was deleted", code="job_deleted")
    _, content_type = FORMATS[fmt]
    object_key = row.transcript_key(fmt)
    if not object_key:
        raise Conflict("the transcript is not ready yet", code="not_completed")
    try:
        if row.speaker_names and row.b2_transcript_json_key:
            # Named speakers: rendered from the stored JSON with the names (libs/jobs/speakers.py).
            stored = await request.app[STORE].get_bytes(row.b2_transcript_json_key)
            data = speakers.render_named(stored, fmt, row.speaker_names)  # type: ignore[arg-type]
        else:
            data = await request.app[STORE].get_bytes(object_key)
    except BlobNotFound:
        raise NotFound("the transcript object is missing from storage") from None
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{row.id}.{fmt}"',
        },
    )


def register(app: web.Application) -> None:
    ROUTES.register(app)
