"""Dead letters over HTTP: list, show, requeue.

Who sees what: an API key sees the dead letters of its own jobs only (404 for others, like
/status). The bootstrap key (API_KEY, the operator's key) sees every dead letter, including
those with no job at all (a foreign or undecodable message), and may requeue any of them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web

from libs import apikeys
from libs.deadletters import records
from libs.deadletters.requeue import requeue
from libs.errors import InvalidInput, NotFound
from services.ingest.context import NATS_CLIENT, POOL, TRACE_ID, authenticate

MAX_LIMIT = 500


def _scope(key: apikeys.ApiKey) -> uuid.UUID | None:
    return None if key.is_bootstrap else uuid.UUID(key.id)


def _dead_letter_id(request: web.Request) -> int:
    raw = request.match_info["dead_letter_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("no such dead letter")
    return int(raw)


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("since must be an ISO 8601 timestamp", code="invalid_since") from None
    if value.tzinfo is None:
        raise InvalidInput(
            "since needs a time zone, e.g. 2026-11-24T10:00:00Z", code="invalid_since"
        )
    return value


async def list_dead_letters(request: web.Request) -> web.Response:
    key = await authenticate(request)
    q = request.query
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise InvalidInput("limit must be an integer", code="invalid_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    job: uuid.UUID | None = None
    if q.get("audio_file_id"):
        try:
            job = uuid.UUID(q["audio_file_id"])
        except ValueError:
            raise InvalidInput(
                "audio_file_id must be a UUID", code="invalid_audio_file_id"
            ) from None
    rows = await records.list_(
        request.app[POOL],
        api_key_id=_scope(key),
        since=_since(q.get("since")),
        open_only=q.get("open", "false").lower() in ("1", "true", "yes"),
        audio_file_id=job,
        limit=limit,
    )
    return web.json_response({"dead_letters": [records.to_json(r) for r in rows]})


async def get_dead_letter(request: web.Request) -> web.Response:
    key = await authenticate(request)
    row = await records.get(request.app[POOL], _dead_letter_id(request), api_key_id=_scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    return web.json_response(records.to_json(row))


async def post_requeue(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    row = await records.get(pool, _dead_letter_id(request), api_key_id=_scope(key))
    if row is None:
        raise NotFound("no such dead letter")
    action = await requeue(
        pool, request.app[NATS_CLIENT].jetstream(), row, trace_id=request[TRACE_ID]
    )
    return web.json_response({"id": row["id"], "action": action})


def register(app: web.Application) -> None:
    app.router.add_get("/api/ops/dead-letters", list_dead_letters)
    app.router.add_get("/api/ops/dead-letters/{dead_letter_id}", get_dead_letter)
    app.router.add_post("/api/ops/dead-letters/{dead_letter_id}/requeue", post_requeue)
