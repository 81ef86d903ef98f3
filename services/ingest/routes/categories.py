"""Categories (issue #21; libs/categories): a key's named rules, evaluated on every completed
call by the insights service, and on past calls on request.

    GET    /api/categories                    the key's categories
    PUT    /api/categories/{name}             create or replace one: {"rule": {...}}
    GET    /api/categories/{name}             one
    DELETE /api/categories/{name}             remove it and its matches on the key's calls
    POST   /api/categories/{name}/apply       re-evaluate it on the key's completed calls
                                              since a time (?since=30d), without transcribing

A key sees and manages its own categories only; the operator's (bootstrap) key may name any
key with `?key=<key id>`.
"""

from __future__ import annotations

import uuid

import msgspec
import structlog
from aiohttp import web

from libs.categories import apply as category_apply
from libs.categories import rules, store
from libs.errors import InvalidInput, NotFound, UnsupportedMedia
from libs.params import check_json_keys, parse_cursor, parse_since
from services.ingest import bodies, category_bodies, request_body
from services.ingest.context import POOL, authenticate, named_key
from services.ingest.openapi import DATE_TIME, ApiRoutes, Reply, in_path, in_query

ROUTES = ApiRoutes("categories")
NAME = in_path(
    "name",
    f"1-{rules.MAX_NAME_CHARS} letters, digits, '_', '.' or '-', starting with a letter or digit",
    {
        "type": "string",
        "maxLength": rules.MAX_NAME_CHARS,
        "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    },
)
KEY = in_query("key", "another key's id or hint (the operator's key only; default: the caller's)")
BAD_NAME = "a malformed name (`invalid_category_name`)"
FOREIGN_KEY = "?key names another key and the caller is not the operator's key (`not_operator`)"
DEFAULT_SINCE = "30d"
# The body is the rule plus a little: the rule's own limit is checked on its JSON as sent.
MAX_BODY_BYTES = rules.MAX_RULE_BYTES + 1024


async def _owner(request: web.Request) -> uuid.UUID:
    """The key whose categories the request is about: the caller's, or ?key= for the
    operator's key."""
    return await named_key(request, await authenticate(request))


def _name(request: web.Request) -> str:
    return rules.check_name(request.match_info["name"])


async def _rule(request: web.Request) -> rules.Rule:
    if request.content_type != "application/json":
        raise UnsupportedMedia("send the rule as application/json", code="unsupported_media")
    raw = await request_body.read(request, limit=MAX_BODY_BYTES, what="a rule's JSON")
    try:
        body = msgspec.json.decode(raw, type=category_bodies.CategoryRule)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"the body: {exc}", code="invalid_body") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        # The rule is read as any JSON value, so msgspec descends as deep as the client nests.
        raise InvalidInput(
            f"the body nests too deep (a rule nests at most {rules.MAX_DEPTH} deep)",
            code="invalid_json",
        ) from None
    check_json_keys(raw)
    return rules.parse(body.rule)


@ROUTES.get(
    "/api/categories",
    summary="The key's categories, by name",
    params=[KEY],
    responses={
        200: Reply("the categories", category_bodies.CategoryList),
        400: BAD_NAME,
        403: FOREIGN_KEY,
        404: "?key names no single active key (`no_such_key`)",
    },
)
async def list_categories(request: web.Request) -> web.Response:
    owner = await _owner(request)
    found = await store.for_key(request.app[POOL], owner)
    return bodies.answer(category_bodies.listing(owner, found))


@ROUTES.get(
    "/api/categories/{name}",
    summary="One category and its rule",
    params=[NAME, KEY],
    responses={
        200: Reply("the category", category_bodies.CategoryBody),
        400: BAD_NAME,
        403: FOREIGN_KEY,
        404: "no such category for this key (`not_found`), or ?key names no key",
    },
)
async def get_category(request: web.Request) -> web.Response:
    owner = await _owner(request)
    name = _name(request)
    found = await store.get(request.app[POOL], owner, name)
    if found is None:
        raise NotFound("no such category")
    return bodies.answer(category_bodies.category(found))


@ROUTES.put(
    "/api/categories/{name}",
    summary="Create or replace a category: a rule on what was said (by whom, when), the "
    "conversation's metrics and its redactions",
    params=[NAME, KEY],
    json=category_bodies.CategoryRule,
    responses={
        200: Reply("replaced", category_bodies.CategoryBody),
        201: Reply("created", category_bodies.CategoryBody),
        400: "a bad rule (`invalid_rule`, the detail starts with the JSON path of the bad part, "
        "e.g. `all[1].by: ...`), a body that is not JSON (`invalid_json`) or not "
        '{"rule": {...}} (`invalid_body`), or ' + BAD_NAME,
        403: FOREIGN_KEY,
        404: "?key names no key",
        409: "the key would hold too many categories (`too_many_categories`) or phrases "
        "(`too_many_phrases`)",
        413: "a body over the rule's size limit",
        415: "not application/json (`unsupported_media`)",
    },
)
async def put_category(request: web.Request) -> web.Response:
    owner = await _owner(request)
    name = _name(request)
    rule = await _rule(request)
    async with request.app[POOL].acquire() as conn:
        stored = await store.put(conn, owner, name, rule)
    body = category_bodies.category(stored.category)
    return bodies.answer(body, status=201 if stored.created else 200)


@ROUTES.delete(
    "/api/categories/{name}",
    summary="Remove a category and its matches on the key's calls",
    params=[NAME, KEY],
    responses={
        200: Reply("removed", category_bodies.CategoryDeleted),
        400: BAD_NAME,
        403: FOREIGN_KEY,
        404: "no such category for this key, or ?key names no key",
    },
)
async def delete_category(request: web.Request) -> web.Response:
    owner = await _owner(request)
    name = _name(request)
    async with request.app[POOL].acquire() as conn:
        if not await store.delete(conn, owner, name):
            raise NotFound("no such category")
    return bodies.answer(category_bodies.CategoryDeleted(name=name))


@ROUTES.post(
    "/api/categories/{name}/apply",
    summary="Evaluate a category again on the key's completed calls since a time, from the "
    "search index (no transcription); newest first, bounded per request",
    params=[
        NAME,
        KEY,
        in_query(
            "since",
            "calls created at or after this time (ISO 8601; an age such as 30d or 12h is also "
            f"taken); default: {DEFAULT_SINCE} ago",
            DATE_TIME,
        ),
        in_query("cursor", "next_cursor of the previous answer, to go on with older calls"),
    ],
    responses={
        200: Reply("the counts", category_bodies.CategoryApplied),
        400: "since or cursor malformed (`invalid_since`, `invalid_cursor`), or " + BAD_NAME,
        403: FOREIGN_KEY,
        404: "no such category for this key, or ?key names no key",
    },
)
async def apply_category(request: web.Request) -> web.Response:
    """Each call's match of the category is replaced (set, or removed when it no longer
    matches); the other categories' matches stay."""
    owner = await _owner(request)
    name = _name(request)
    since_text = request.query.get("since") or DEFAULT_SINCE
    since = parse_since(since_text)
    after = parse_cursor(request.query.get("cursor"))
    pool = request.app[POOL]
    found = await store.get(pool, owner, name)
    if found is None:
        raise NotFound("no such category")
    done = await category_apply.apply(pool, owner, found, since, after=after)
    # On the request's one summary line.
    structlog.contextvars.bind_contextvars(
        category=name,
        evaluated=done.evaluated,
        matched=done.matched,
        skipped=done.skipped,
        more=done.after is not None,
    )
    return bodies.answer(category_bodies.applied(name, since.isoformat(), done))


def register(app: web.Application) -> None:
    ROUTES.register(app)
