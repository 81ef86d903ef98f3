"""What every route module shares: typed app/request keys and authentication."""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS

from libs import apikeys, db
from libs.blobstore import BlobStore
from libs.db import DatabaseUnavailable
from libs.ratelimit import RateLimiter
from libs.settings import Settings
from services.ingest.errors import ApiError, not_found
from services.ingest.submit import SubmitContext

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", BlobStore)
NATS_CLIENT = web.AppKey("nats", NATS)
SUBMIT_CTX = web.AppKey("submit_ctx", SubmitContext)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
API_KEY = web.RequestKey("api_key", apikeys.ApiKey)
TRACE_ID = web.RequestKey("trace_id", str)


async def authenticate(request: web.Request) -> apikeys.ApiKey:
    raw = request.headers.get("X-API-Key", "")
    if not raw:
        raise ApiError(401, "missing_api_key", "send your key in the X-API-Key header")
    try:
        key = await apikeys.authenticate(request.app[POOL], raw)
    except db.CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    if key is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid")
    request[API_KEY] = key
    structlog.contextvars.bind_contextvars(api_key=key.key_hint)
    if key.rate_limit_per_minute:
        decision = await request.app[RATE_LIMITER].take(key.id, key.rate_limit_per_minute)
        if not decision.allowed:
            raise ApiError(
                429,
                "rate_limited",
                f"this key allows {key.rate_limit_per_minute} requests per minute",
                headers={"Retry-After": str(decision.retry_after)},
            )
    return key


def job_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["audio_file_id"])
    except ValueError:
        raise not_found("no such job") from None
