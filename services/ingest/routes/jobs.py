"""The reference job endpoints: submit, status, rerun, transcript downloads."""

from __future__ import annotations

import uuid

from aiohttp import web

from libs import db
from libs.blobstore import BlobNotFound
from libs.db import DatabaseUnavailable
from libs.errors import Conflict, InvalidInput, NotFound
from services.ingest import jobs, params
from services.ingest.context import (
    POOL,
    SETTINGS,
    STORE,
    SUBMIT_CTX,
    TRACE_ID,
    authenticate,
    job_id,
)
from services.ingest.form import parse_submit_form
from services.ingest.status import status_body
from services.ingest.submit import submit

FORMATS = {
    "json": ("b2_transcript_json_key", "application/json"),
    "txt": ("b2_transcript_txt_key", "text/plain; charset=utf-8"),
    "srt": ("b2_transcript_srt_key", "application/x-subrip"),
    "vtt": ("b2_transcript_vtt_key", "text/vtt; charset=utf-8"),
}


async def post_transcribe(request: web.Request) -> web.Response:
    key = await authenticate(request)
    settings = request.app[SETTINGS]
    form = await parse_submit_form(
        request, max_upload_bytes=settings.max_upload_bytes, spool_dir=None
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
    return web.json_response(accepted.body())


async def get_status(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await db.fetchrow(request.app[POOL], jobs.STATUS, job_id(request), uuid.UUID(key.id))
    if row is None:
        raise NotFound("no such job")
    return web.json_response(status_body(row))


async def post_rerun(request: web.Request) -> web.Response:
    """Requeue a finished job for a new transcription. A job still queued or running is left
    alone (409) unless `?force=true`: it is about to produce a result anyway, and a second event
    would transcribe it twice."""
    key = await authenticate(request)
    force = params.parse_bool(request.query.get("force"), "force")
    pool = request.app[POOL]
    row = await db.fetchrow(pool, jobs.FIND_FOR_KEY, job_id(request), uuid.UUID(key.id))
    if row is None:
        raise NotFound("no such job")
    try:
        async with pool.acquire() as conn:
            requeued = await jobs.requeue(
                conn, row, trace_id=request[TRACE_ID], even_if_active=force
            )
    except db.CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    if not requeued:
        raise Conflict(
            f"the job is {row['status']}; it will finish on its own (add ?force=true to requeue anyway)",
            code="job_active",
        )
    return web.json_response({"audio_file_id": str(row["id"]), "status": "QUEUED"})


async def get_transcript(request: web.Request) -> web.Response:
    key = await authenticate(request)
    fmt = request.match_info.get("fmt") or request.query.get("format", "txt")
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {sorted(FORMATS)}", code="invalid_format")
    row = await db.fetchrow(request.app[POOL], jobs.STATUS, job_id(request), uuid.UUID(key.id))
    if row is None:
        raise NotFound("no such job")
    column, content_type = FORMATS[fmt]
    object_key = row[column] if row["status"] == "completed" else None
    if not object_key:
        raise Conflict("the transcript is not ready yet", code="not_completed")
    try:
        data = await request.app[STORE].get_bytes(object_key)
    except BlobNotFound:
        raise NotFound("the transcript object is missing from storage") from None
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{row["id"]}.{fmt}"',
        },
    )


def register(app: web.Application) -> None:
    app.router.add_post("/api/media/transcribe", post_transcribe)
    app.router.add_get("/api/media/status/{audio_file_id}", get_status)
    app.router.add_post("/api/media/rerun/{audio_file_id}", post_rerun)
    app.router.add_get("/api/media/transcript/{audio_file_id}.{fmt}", get_transcript)
    app.router.add_get("/api/media/transcript/{audio_file_id}", get_transcript)
