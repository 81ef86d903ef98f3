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
from nats.js.errors import APIError, NotFoundError

from libs.bus.errors import BusUnavailable

# What nats-py raises when the server is away, slow or refuses: the bus is unavailable.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)
# JetStream's answers to deleting a message that is not there (any more): 10043 "sequence N not
# found", and "no message found" (deleted, aged out) or "stream store EOF" (past the last) as
# 10057 "msg delete failed" (which also wraps real store failures: those stay errors).
SEQUENCE_NOT_FOUND = 10043
MESSAGE_DELETE_FAILED = 10057
MESSAGE_GONE = frozenset({"no message found", "stream store eof"})


@asynccontextmanager
async def _translated(action: str) -> AsyncIterator[None]:
    try:
        yield
    except DRIVER_ERRORS as exc:
        # A JetStream API error's str() has its code and description; its repr() has neither.
        detail = str(exc) if isinstance(exc, APIError) else repr(exc)
        raise BusUnavailable(f"{action}: {detail}") from exc


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> tuple[str, int]:
    """Publish and wait for the PubAck; the (stream, sequence) the message is stored at (a
    duplicate within the window answers the first copy's)."""
    kwargs: dict[str, Any] = {"headers": headers}
    if timeout is not None:
        kwargs["timeout"] = timeout
    async with _translated(f"cannot publish to {subject}"):
        ack = await js.publish(subject, payload, **kwargs)
    return ack.stream, ack.seq


async def erase_message(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Delete message `seq` of `stream`, overwriting its bytes on disk (JetStream's "erase":
    nats-py's delete_msg sends no `no_erase`, so the server erases). True when it was there;
    False when it is gone already (deleted, aged out, or no such stream): either way, it is not
    there any more."""
    async with _translated(f"cannot erase {stream} #{seq}"):
        try:
            return bool(await js.delete_msg(stream, seq))
        except APIError as exc:
            gone = exc.err_code == SEQUENCE_NOT_FOUND or (
                exc.err_code == MESSAGE_DELETE_FAILED
                and (exc.description or "").lower() in MESSAGE_GONE
            )
            if isinstance(exc, NotFoundError) or gone:
                return False
            raise


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


class StreamEraser:
    """`erase_message` on one JetStream context (libs.outbox.published.MessageEraser)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def erase(self, stream: str, seq: int) -> bool:
        return await erase_message(self._js, stream, seq)
