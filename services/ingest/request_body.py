"""Reading a whole request body that is not a form (the JSON bodies): every byte that arrives,
at most `limit` of them, within INGEST_BODY_READ_TIMEOUT like the forms of
services/ingest/form.py. A body that trickles is 408 `body_read_timeout` (the connection is
closed after it), one over the limit 413, whatever Content-Length says."""

from __future__ import annotations

import asyncio

from aiohttp import web

from libs.errors import TimedOut, TooLarge
from services.ingest.context import SETTINGS


async def read(request: web.Request, *, limit: int, what: str = "the body") -> bytes:
    """The body's bytes, however many pieces they arrive in."""
    too_large = TooLarge(f"{what} is at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    seconds = request.app[SETTINGS].ingest_body_read_timeout
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise TimedOut(
            f"the request body did not arrive within {seconds:g} s", code="body_read_timeout"
        ) from None
    return b"".join(chunks)
