"""Dead letters over HTTP: list, show, requeue.

Who sees what: an API key sees the dead letters of its own jobs only (404 for others, like
/status). The bootstrap key (API_KEY, the operator's key) sees every dead letter, including
those with no job at all (a foreign or undecodable message), and may requeue any of them.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from libs import apikeys, params
from libs.deadletters import records
from libs.deadletters.requeue import requeue
from libs.errors import NotFound
from services.ingest import bodies
from services.ingest.context import NATS_CLIENT, POOL, TRACE_ID, authenticate
from services.ingest.openapi import BOOLEAN, DATE_TIME, UUID, ApiRoutes, Reply, in_path, in_query

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
ROUTES = ApiRoutes("dead letters")
DEAD_LETTER_ID = in_path("dead_letter_id", "id from the dead-letter list", {"type": "integer"})
NO_SUCH_DEAD_LETTER = "no such dead letter for this key"


def _scope(key: apikeys.ApiKey) -> uuid.UUID | None:
    return None if key.is_bootstrap else uuid.UUID(key.id)


def _dead_letter_id(request: web.Request) -> int:
    return params.path_int_id(request.match_info["dead_letter_id"], "dead letter")


@ROUTES.get(
    "/api/ops/dead-letters",
    summary="Dead letters, newest first: a key sees its own jobs', the bootstrap key all",
    params=[
        in_query("since", "captured at or after this ISO 8601 time (zone-less: UTC)", DATE_TIME),
        in_query("open", "only those not requeued yet (true/false, 1/0, yes/no)", BOOLEAN),
        in_query("audio_file_id", "only this job's", UUID),
        in_query(
            "limit",
            f"at most this many (default {DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
    ],
    responses={
        200: Reply("the dead letters", bodies.DeadLetters),
        400: "since, open, audio_file_id or limit malformed",
    },
)
async def list_dead_letters(request: web.Request) -> web.Response:
    key = await authenticate(request)
    q = request.query
    limit = params.parse_int(q.get("limit"), "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    job = params.parse_uuid(q.get("audio_file_id"), "audio_file_id", required=False)
    since = params.parse_time(q.get("since"), "since", required=False)
    only_open = params.parse_bool(q.get("open"), "open")
    rows = await records.list_(
        request.app[POOL],
        api_key_id=_scope(key),
        since=since,
        open_only=only_open,
        audio_file_id=job,
        limit=limit,
    )
    return bodies.answer(bodies.DeadLetters([records.DeadLetter.from_row(r) for r in rows]))


@ROUTES.get(
    "/api/ops/dead-letters/{dead_letter_id}",
    summary="One dead letter, with its original event",
    params=[DEAD_LETTER_ID],
    responses={200: Reply("the dead letter", bodies.DeadLetter), 404: NO_SUCH_DEAD_LETTER},
)
async def get_dead_letter(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await records.get(request.app[POOL], _dead_letter_id(request), api_key_id=_scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    return bodies.answer(records.DeadLetter.from_row(row))


@ROUTES.post(
    "/api/ops/dead-letters/{dead_letter_id}/requeue",
    operation_id="requeueDeadLetter",
    summary="Put a dead letter's work back (a forced AudioStored, or its result event again)",
    params=[DEAD_LETTER_ID],
    responses={
        200: Reply("requeued", bodies.RequeueAction),
        404: NO_SUCH_DEAD_LETTER,
        409: "this dead letter cannot be requeued",
    },
)
async def post_requeue(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    row = await records.get(pool, _dead_letter_id(request), api_key_id=_scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    action = await requeue(
        pool, request.app[NATS_CLIENT].jetstream(), row, trace_id=request[TRACE_ID]
    )
    return bodies.answer(bodies.RequeueAction(id=row["id"], action=action))


def register(app: web.Application) -> None:
    ROUTES.register(app)
