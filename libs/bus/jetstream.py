"""JetStream calls made outside the consumer, with the driver's errors translated once: a NATS
error, a socket error or a timeout becomes BusUnavailable (`from` the driver's exception), so
the callers (outbox relay, dead-letter capture and requeue, replay, the ops collector) catch a
domain error and never nats-py's classes. "Nothing there" is an answer, not an error: a message
aged out, a stream that does not exist, no message within a timeout are None."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from libs.bus.errors import BusUnavailable

# What nats-py raises when the server is away, slow or refuses: the bus is unavailable.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)


@asynccontextmanager
async def _translated(action: str) -> AsyncIterator[None]:
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise BusUnavailable(f"{action}: {exc!r}") from exc


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> None:
    """Publish and wait for the PubAck."""
    kwargs: dict[str, Any] = {"headers": headers}
    if timeout is not None:
        kwargs["timeout"] = timeout
    async with _translated(f"cannot publish to {subject}"):
        await js.publish(subject, payload, **kwargs)


async def stored_message(
    js: JetStreamContext, stream: str, seq: int
) -> tuple[str | None, bytes | None] | None:
    """(subject, data) of message `seq` of `stream`; None when it is gone (MaxAge, deleted)."""
    async with _translated(f"cannot read {stream} #{seq}"):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            return None
    return msg.subject, msg.data


async def stream_info(js: JetStreamContext, stream: str) -> js_api.StreamInfo | None:
    """The stream's state; None when there is no such stream."""
    async with _translated(f"cannot read stream {stream}"):
        try:
            return await js.stream_info(stream)
        except NotFoundError:
            return None


async def consumers_info(js: JetStreamContext, stream: str) -> list[js_api.ConsumerInfo]:
    async with _translated(f"cannot list the consumers of {stream}"):
        return list(await js.consumers_info(stream))


async def next_message(sub: Subscription, timeout: float) -> Msg | None:
    """The subscription's next message; None when none arrives within `timeout`."""
    async with _translated("cannot read the subscription"):
        try:
            return await sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None


async def unsubscribe(sub: Subscription) -> None:
    async with _translated("cannot unsubscribe"):
        await sub.unsubscribe()
