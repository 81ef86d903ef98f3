"""Dead letters over HTTP: list, show, requeue.

Who sees what: an API key sees the dead letters of its own jobs only (404 for others, like
/status). The bootstrap key (API_KEY, the operator's key) sees every dead letter, including
those with no job at all (a foreign or undecodable message), and may requeue any of them.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from libs import apikeys, db
from libs.errors import Conflict, NotFound
from services.deadletters import repository as repo
from services.deadletters.requeue import NotRequeueable, requeue
from services.ingest import params
from services.ingest.context import NATS_CLIENT, POOL, TRACE_ID, authenticate

MAX_LIMIT = 500


def _scope(key: apikeys.ApiKey) -> uuid.UUID | None:
    return None if key.is_bootstrap else uuid.UUID(key.id)


def _dead_letter_id(request: web.Request) -> int:
    return params.path_int_id(request.match_info["dead_letter_id"], "dead letter")


async def list_dead_letters(request: web.Request) -> web.Response:
    key = await authenticate(request)
    q = request.query
    limit = params.parse_int(q.get("limit"), "limit", default=100, low=1, high=MAX_LIMIT)
    job = params.parse_uuid(q.get("audio_file_id"), "audio_file_id", required=False)
    since = params.parse_time(q.get("since"), "since", required=False)
    only_open = params.parse_bool(q.get("open"), "open")
    rows = await db.fetch(
        request.app[POOL],
        repo.LIST,
        _scope(key),
        since,
        only_open,
        job,
        limit,
    )
    return web.json_response({"dead_letters": [repo.to_json(r) for r in rows]})


async def get_dead_letter(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await db.fetchrow(request.app[POOL], repo.GET, _dead_letter_id(request), _scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    return web.json_response(repo.to_json(row))


async def post_requeue(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    row = await db.fetchrow(pool, repo.GET, _dead_letter_id(request), _scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    try:
        action = await requeue(
            pool, request.app[NATS_CLIENT].jetstream(), row, trace_id=request[TRACE_ID]
        )
    except NotRequeueable as exc:
        raise Conflict(str(exc), code="not_requeueable") from exc
    return web.json_response({"id": row["id"], "action": action})


def register(app: web.Application) -> None:
    app.router.add_get("/api/ops/dead-letters", list_dead_letters)
    app.router.add_get("/api/ops/dead-letters/{dead_letter_id}", get_dead_letter)
    app.router.add_post("/api/ops/dead-letters/{dead_letter_id}/requeue", post_requeue)
