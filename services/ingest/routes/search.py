"""Search across calls and within one call (issue #20; libs/search).

A key finds its own calls only; the bootstrap key (the operator's) finds every call. Only
completed jobs are in the index."""

from __future__ import annotations

from aiohttp import web

from libs.errors import Conflict, InvalidInput, NotFound
from libs.jobs import record
from libs.search import query
from services.ingest import bodies, search_bodies
from services.ingest.context import POOL, authenticate, job_id, tenant_scope
from services.ingest.openapi import DATE_TIME, UUID, ApiRoutes, Param, Reply, in_path, in_query

ROUTES = ApiRoutes("search")
NUMBER = {"type": "number", "minimum": 0}
SHARE = {"type": "number", "minimum": 0, "maximum": 1}
Q_DOC = (
    'what was said, web-search style: words (stemmed by the call\'s language), "a phrase", '
    f"-excluded, a OR b; at most {query.MAX_QUERY_CHARS} characters; any other character is "
    "text, never syntax"
)
ROLE_DOC = 'agent, customer (another role of the key\'s map), a speaker label ("Channel 0", '
ROLE_DOC += '"Speaker A") or any (the default)'
RANGE_DOCS = {
    "duration": ("the call's duration in seconds", NUMBER),
    "talk_ratio": ("the agent's share of the talk time (0-1; calls with an agent)", SHARE),
    "silence_share": ("the share of the call nobody speaks (0-1)", SHARE),
    "interruptions": ("interruptions, all speakers", {"type": "integer", "minimum": 0}),
    "overlap": ("seconds two or more speakers talk at once", NUMBER),
    "wpm": ("words per minute of talk time, all speakers", NUMBER),
}


def _range_params() -> list[Param]:
    out = []
    for name, (doc, schema) in RANGE_DOCS.items():
        out.append(in_query(f"min_{name}", f"at least: {doc}", schema))
        out.append(in_query(f"max_{name}", f"at most: {doc}", schema))
    return out


@ROUTES.get(
    "/api/media/search",
    operation_id="searchCalls",
    summary="Calls in which something was said (by whom), filtered on campaign, time and the "
    "conversation's metrics; by relevance, then newest",
    params=[
        in_query("q", Q_DOC, {"type": "string", "maxLength": query.MAX_QUERY_CHARS}),
        in_query("role", ROLE_DOC),
        in_query("campaign", "exact campaign name", {"type": "string", "maxLength": 256}),
        in_query("since", "calls created at or after this time (ISO 8601)", DATE_TIME),
        in_query("until", "calls created before this time (ISO 8601)", DATE_TIME),
        in_query(
            "status",
            "only completed calls are searchable",
            {"type": "string", "enum": list(query.STATUSES)},
        ),
        *_range_params(),
        in_query(
            "category",
            "calls that matched this category of the key (exact name; docs/insights.md)",
            {"type": "string", "maxLength": query.MAX_LABEL_CHARS},
        ),
        in_query(
            "outcome",
            "calls whose insights chose this outcome (exact, from the campaign's list)",
            {"type": "string", "maxLength": query.MAX_LABEL_CHARS},
        ),
        in_query(
            "limit",
            f"calls per page (default {query.DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": query.MAX_LIMIT},
        ),
        in_query("cursor", "next_cursor of the previous page"),
    ],
    responses={
        200: Reply("a page of calls", search_bodies.SearchPage),
        400: "q too long or not text (`invalid_q`), a malformed parameter or a range whose "
        "minimum is above its maximum (`invalid_<name>`)",
    },
)
async def get_search(request: web.Request) -> web.Response:
    """Without q it filters only (newest first). The cursor is the (rank, created_at, id) of
    the last hit: calls completed while a client pages never shift or repeat a hit."""
    key = await authenticate(request)
    search = query.parse(request.query)
    page = await query.search(request.app[POOL], search, api_key_id=tenant_scope(key))
    return bodies.answer(search_bodies.page(page))


@ROUTES.get(
    "/api/media/{audio_file_id}/search",
    operation_id="searchCall",
    summary="Every match within one call, with the word-level times a player can jump to",
    params=[
        in_path("audio_file_id", "the job", UUID),
        in_query("q", Q_DOC, {"type": "string", "maxLength": query.MAX_QUERY_CHARS}, required=True),
        in_query("role", ROLE_DOC),
    ],
    responses={
        200: Reply("the matches in time order", search_bodies.CallSearch),
        400: "q missing (`missing_q`), too long or not text (`invalid_q`), role malformed",
        404: "no such job for this key",
        409: "the job is not completed (`not_completed`), was deleted (`job_deleted`) or "
        "completed before the index existed (`not_indexed`: transcribe search reindex)",
    },
)
async def get_call_search(request: web.Request) -> web.Response:
    key = await authenticate(request)
    job = job_id(request)
    q = query.clean_query(request.query.get("q"))
    if q is None:
        raise InvalidInput("give q, the words to find", code="missing_q")
    role = query.clean_role(request.query.get("role"))
    pool = request.app[POOL]
    scope = tenant_scope(key)
    owner = await query.owner(pool, job)
    if owner is None or (scope is not None and owner != scope):
        known = await record.load(pool, job, api_key_id=scope)
        if known is None:
            raise NotFound("no such job")
        if known.status == "deleted":
            raise Conflict("the job was deleted", code="job_deleted")
        if known.status == "completed":
            raise Conflict(
                "the call is not indexed yet (transcribe search reindex)", code="not_indexed"
            )
        raise Conflict("the job is not completed", code="not_completed")
    found = await query.within_call(pool, job, q, role)
    return bodies.answer(search_bodies.call(str(job), found))


def register(app: web.Application) -> None:
    ROUTES.register(app)
