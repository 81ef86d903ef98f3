"""What every route module shares: typed app/request keys and authentication.

A request authenticates with X-API-Key, or with the console's session cookie (`tg_session`):
then `request[API_KEY]` is the key the user acts as (their tenant's key; the bootstrap key for
an operator user), so every handler works unchanged, and `request[PRINCIPAL]` says what the
caller may do (services/ingest/access.py checks the route's level and the CSRF token)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS

from libs import apikeys, params
from libs.apikeys import endpoints
from libs.blobstore import BlobStore
from libs.errors import Forbidden, NotFound, RateLimited, Unauthenticated
from libs.ratelimit import RateLimiter
from libs.settings import Settings
from libs.users import sessions
from libs.users.roles import Level, level_of
from services.ingest import access
from services.ingest.submit import SubmitContext

Clock = Callable[[], datetime]
SESSION_COOKIE = "tg_session"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key (`session` None; a key is its tenant's admin, the bootstrap
    key the operator) or a console user's session, and the level they act at."""

    level: Level
    operator: bool
    session: sessions.Session | None = None


SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", BlobStore)
NATS_CLIENT = web.AppKey("nats", NATS)
SUBMIT_CTX = web.AppKey("submit_ctx", SubmitContext)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
API_KEY = web.RequestKey("api_key", apikeys.ApiKey)
TRACE_ID = web.RequestKey("trace_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)
# The time sessions and logins are judged by (tests pass their own clock to create_app).
CLOCK: web.AppKey[Clock] = web.AppKey("clock")


def now(request: web.Request) -> datetime:
    clock: Clock = request.app[CLOCK]
    return clock()


async def authenticate(request: web.Request) -> apikeys.ApiKey:
    """The key the request acts as: its X-API-Key, else its console session's (the session's
    CSRF token and the route's role level checked). Raises Unauthenticated, Forbidden or
    RateLimited."""
    raw = request.headers.get("X-API-Key", "")
    token = request.cookies.get(SESSION_COOKIE, "")
    if raw:
        key = await apikeys.authenticate(request.app[POOL], raw)
        if key is None:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        level: Level = "operator" if key.is_bootstrap else "admin"
        request[PRINCIPAL] = Principal(level=level, operator=key.is_bootstrap)
    elif token:
        key = await session_key(request, token)
    else:
        raise Unauthenticated(
            "send your key in the X-API-Key header (or log in: POST /api/session)",
            code="missing_api_key",
        )
    request[API_KEY] = key
    structlog.contextvars.bind_contextvars(api_key=key.key_hint)
    if key.rate_limit_per_minute:
        decision = await request.app[RATE_LIMITER].take(key.id, key.rate_limit_per_minute)
        if not decision.allowed:
            raise RateLimited(
                f"this key allows {key.rate_limit_per_minute} requests per minute",
                retry_after=decision.retry_after,
            )
    return key


def tenant_scope(key: apikeys.ApiKey) -> uuid.UUID | None:
    """The key whose data a request reaches: its own, or every tenant's (None) for the
    operator's bootstrap key, which operator console users act as. Jobs are read so; writes to
    a job stay with the key that owns it."""
    return None if key.is_bootstrap else uuid.UUID(key.id)


async def named_key(request: web.Request, key: apikeys.ApiKey) -> uuid.UUID:
    """The key a per-key setting is about: the caller's own, or the one the operator's key
    names with `?key=<key id or hint>` (403 `not_operator` for any other caller naming another
    key; 404 `no_such_key` when no single active key has that id or hint)."""
    named = request.query.get("key")
    if not named or named == key.id:
        return uuid.UUID(key.id)
    if not key.is_bootstrap:
        raise Forbidden("only the operator's key may name another key", code="not_operator")
    found = await endpoints.find_key(request.app[POOL], named)
    if len(found) != 1:
        raise NotFound("no single active key with that id or hint", code="no_such_key")
    return found[0]


def job_id(request: web.Request) -> uuid.UUID:
    return params.path_uuid(request.match_info["audio_file_id"], "job")


async def session_key(request: web.Request, token: str) -> apikeys.ApiKey:
    """The key of the console session `token` names, after its CSRF check (state-changing
    methods) and the route's role level; sets `request[PRINCIPAL]`."""
    settings = request.app[SETTINGS]
    access.check_csrf(request, token, settings.public_base_url)
    session = await sessions.resolve(
        request.app[POOL],
        token,
        now=now(request),
        idle=timedelta(minutes=settings.console_idle_minutes),
    )
    if session is None:
        raise Unauthenticated("the session has ended; log in again", code="session_expired")
    pool = request.app[POOL]
    if session.operator:
        key = await apikeys.operator(pool)
    else:
        assert session.api_key_id is not None
        key = await apikeys.active(pool, session.api_key_id)
    if key is None:
        raise Unauthenticated("the user's API key was revoked", code="session_expired")
    level = level_of(session.role, operator=session.operator)
    request[PRINCIPAL] = Principal(level=level, operator=session.operator, session=session)
    structlog.contextvars.bind_contextvars(console_user=str(session.user_id))
    access.check_level(request, level)
    return key
