"""What every route module shares: typed app/request keys and authentication."""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS

from libs import apikeys, params
from libs.blobstore import BlobStore
from libs.errors import RateLimited, Unauthenticated
from libs.ratelimit import RateLimiter
from libs.settings import Settings
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
        raise Unauthenticated("send your key in the X-API-Key header", code="missing_api_key")
    key = await apikeys.authenticate(request.app[POOL], raw)
    if key is None:
        raise Unauthenticated("the API key is not valid", code="invalid_api_key")
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


def job_id(request: web.Request) -> uuid.UUID:
    return params.path_uuid(request.match_info["audio_file_id"], "job")
