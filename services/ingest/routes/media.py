"""What the console needs of a call besides its status and transcript:

    GET /api/media/{audio_file_id}/audio      the audio as stored (the redacted copy where the
                                              policy redacted it), with HTTP Range (206)
    PUT /api/media/{audio_file_id}/speakers   {"names": {"Speaker A": "Mrs Jones"}}

A key (or a console user acting as it) sees its own jobs only: 404 for any other."""

from __future__ import annotations

import uuid

import msgspec
import structlog
from aiohttp import ClientConnectionResetError, web

from libs.blobstore import BlobNotFound
from libs.errors import Conflict, NotFound
from libs.jobs import audio, record, speakers, views
from libs.transcript.model import Transcript
from services.ingest import bodies, byteranges, console_bodies
from services.ingest.context import (
    POOL,
    PRINCIPAL,
    STORE,
    authenticate,
    job_id,
    tenant_scope,
)
from services.ingest.openapi import UUID, ApiRoutes, Reply, in_header, in_path

log = structlog.get_logger()

ROUTES = ApiRoutes("console")
JOB_ID = in_path("audio_file_id", "the job", UUID)
NO_SUCH_JOB = "no such job for this key"
BINARY = {"type": "string", "format": "binary"}
AUDIO_MEDIA = {"audio/*": BINARY}


@ROUTES.get(
    "/api/media/{audio_file_id}/audio",
    operation_id="audio",
    summary="The job's audio as stored (the redacted copy where the policy redacted the "
    "audio); HTTP Range for seeking",
    params=[
        JOB_ID,
        in_header(
            "Range",
            "one byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`): 206; several ranges: the "
            "whole audio, 200",
        ),
    ],
    responses={
        200: Reply(
            "the whole audio (Accept-Ranges: bytes)",
            media=AUDIO_MEDIA,
            headers={"Accept-Ranges": "bytes"},
        ),
        206: Reply(
            "the range asked for",
            media=AUDIO_MEDIA,
            headers={"Content-Range": "bytes <first>-<last>/<size>", "Accept-Ranges": "bytes"},
        ),
        404: NO_SUCH_JOB,
        409: "the job was deleted (`job_deleted`), retention removed its audio "
        "(`audio_expired`), or the policy redacts its audio and the redacted copy is not there "
        "(`audio_not_redacted`: never the unredacted recording instead)",
        416: Reply(
            "the range starts past the end (Content-Range: bytes */<size>)",
            bodies.ErrorBody,
            headers={"Content-Range": "bytes */<size>"},
        ),
    },
)
async def get_audio(request: web.Request) -> web.StreamResponse:
    """Streamed from object storage with one ranged GET: memory does not grow with the file."""
    key = await authenticate(request)
    pool, store, job = request.app[POOL], request.app[STORE], job_id(request)
    owner = tenant_scope(key)
    found = await record.load(pool, job, api_key_id=owner)
    view = await views.status(pool, job, owner)
    if found is None or view is None:
        raise NotFound("no such job")
    playable = audio.playable(found, view)
    try:
        info = await store.info(playable.key)
    except BlobNotFound:
        raise NotFound("the audio object is missing from storage") from None
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": playable.content_type or info.content_type or "application/octet-stream",
        "Content-Disposition": f'inline; filename="{found.id}.{_extension(playable.key)}"',
        "Cache-Control": "private, no-store",
    }
    try:
        wanted = byteranges.parse(request.headers.get("Range"), info.size)
    except byteranges.Unsatisfiable:
        return bodies.answer(
            bodies.ErrorBody(
                error="range_not_satisfiable",
                detail=f"the audio has {info.size} bytes",
            ),
            status=416,
            headers={"Content-Range": f"bytes */{info.size}", "Accept-Ranges": "bytes"},
        )
    span = wanted or byteranges.ByteRange(0, info.size - 1)
    response = web.StreamResponse(status=200 if wanted is None else 206, headers=headers)
    if wanted is not None:
        response.headers["Content-Range"] = wanted.content_range(info.size)
    response.content_length = max(span.length, 0)
    await response.prepare(request)
    try:
        if span.length > 0:
            async for chunk in store.read_range(playable.key, span.first, span.last):
                await response.write(chunk)
        await response.write_eof()
    except ClientConnectionResetError:
        # Raised by our writes only: the player went away (a seek drops the request it no
        # longer needs). The answer stands as sent; not an outage of Postgres or S3.
        log.info("audio_client_gone", audio_file_id=str(found.id))
    return response


def _extension(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1] if "." in name else "bin"
    return ext if ext.isascii() and ext.isalnum() and len(ext) <= 8 else "bin"


@ROUTES.put(
    "/api/media/{audio_file_id}/speakers",
    operation_id="nameSpeakers",
    summary="Name the speakers of a completed job (replaces its names; {} removes them)",
    params=[JOB_ID],
    json=console_bodies.SpeakerNames,
    responses={
        200: Reply("the names as stored", console_bodies.Speakers),
        400: "not the JSON object {names: {label: name}} (`invalid_json`), a label that is "
        "not in the transcript (`invalid_speaker`), or a name that is empty, over 64 "
        "characters or holds control characters (`invalid_speaker_name`)",
        404: NO_SUCH_JOB,
        409: "the job was deleted (`job_deleted`) or is not completed (`not_completed`)",
        415: "not application/json",
    },
)
async def put_speakers(request: web.Request) -> web.Response:
    """Stored, shown in the status answer (`metadata.speaker_names`) and applied to the txt,
    srt and vtt downloads; the JSON download keeps the labels and adds `speaker_names`."""
    key = await authenticate(request)
    pool, job = request.app[POOL], job_id(request)
    row = await views.status(pool, job, uuid.UUID(key.id))
    if row is None:
        raise NotFound("no such job")
    body = await console_bodies.read_json(request, console_bodies.SpeakerNames)
    if row.status == "deleted":
        raise Conflict("the job was deleted", code="job_deleted")
    json_key = row.transcript_key("json")
    if not json_key:
        raise Conflict("the transcript is not ready yet", code="not_completed")
    try:
        stored = await request.app[STORE].get_bytes(json_key)
    except BlobNotFound:
        raise NotFound("the transcript object is missing from storage") from None
    transcript = msgspec.json.decode(stored, type=Transcript)
    names = speakers.validate(body.names, transcript)
    session = request[PRINCIPAL].session
    by = f"user:{session.user_id}" if session is not None else f"key:{key.id}"
    await speakers.save(pool, job, names, by=by)
    return bodies.answer(console_bodies.Speakers(audio_file_id=str(job), speaker_names=names))


def register(app: web.Application) -> None:
    ROUTES.register(app)
