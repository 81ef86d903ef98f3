"""A durable pull consumer with ONE place deciding ack / nak(delay) / term.

Handlers say how they ended by returning (ack) or raising `Retry`, `Reject` or `Pause`; any
other exception is treated as transient. `settle()` is the only code that talks back to
JetStream about a message, so the redelivery policy is readable in one screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

log = structlog.get_logger()

# Growing delays for transient failures, indexed by delivery count (seconds).
BACKOFF = (2.0, 10.0, 30.0, 60.0, 180.0, 300.0, 600.0)
# Server-given waits (Retry-After) are honoured up to this: a misconfigured proxy answering
# "Retry-After: 86400" must not park a job for a day, and MaxDeliver still bounds the retries.
MAX_RETRY_DELAY = 900.0
# A pause longer than this is re-checked by its probe anyway.
MAX_PAUSE = 900.0

Probe = Callable[[], Awaitable[bool]]


class Retry(Exception):
    """Transient failure: redeliver after `delay` (None: the standard backoff)."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(Exception):
    """Permanent failure: never redeliver. The handler has already recorded why."""


class Pause(Exception):
    """Nothing can succeed for a while (e.g. credentials rejected): redeliver this message
    later and stop fetching for `seconds`, instead of failing every job.

    While paused the consumer fetches nothing, so no message's delivery count grows; when the
    pause ends, `probe` (if given) is awaited first and the pause goes on while it answers
    False. A key outage therefore costs each in-flight message one delivery, not MaxDeliver.
    `requeued=True` says the handler already handed the work over (e.g. re-published it
    because this was the last allowed delivery), so the message is acked, not nak'd.
    """

    def __init__(
        self,
        reason: str,
        *,
        seconds: float,
        probe: Probe | None = None,
        requeued: bool = False,
    ) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.probe = probe
        self.requeued = requeued


class Outcome(enum.Enum):
    ACK = "ack"
    NAK = "nak"
    TERM = "term"


@dataclass(frozen=True, slots=True)
class Delivery:
    msg: Msg
    subject: str
    data: bytes
    num_delivered: int
    max_deliver: int
    stream_seq: int

    @property
    def last_attempt(self) -> bool:
        return self.max_deliver > 0 and self.num_delivered >= self.max_deliver


Handler = Callable[[Delivery], Awaitable[None]]


def backoff(num_delivered: int) -> float:
    base = BACKOFF[min(max(num_delivered, 1), len(BACKOFF)) - 1]
    # Jitter so a burst of failures does not come back as a burst.
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - not cryptographic


def decide(error: BaseException | None, delivery: Delivery) -> tuple[Outcome, float | None]:
    """How a handler ended -> what JetStream is told. The one place for this policy."""
    if error is None:
        return Outcome.ACK, None
    if isinstance(error, Reject):
        return Outcome.TERM, None
    if isinstance(error, Pause):
        if error.requeued:
            return Outcome.ACK, None
        return Outcome.NAK, clamp_delay(error.seconds, MAX_PAUSE)
    if isinstance(error, asyncio.CancelledError):
        # Shutdown: hand the message straight to another worker.
        return Outcome.NAK, 0.0
    if isinstance(error, Retry) and error.delay is not None:
        return Outcome.NAK, clamp_delay(error.delay, MAX_RETRY_DELAY)
    return Outcome.NAK, backoff(delivery.num_delivered)


def clamp_delay(seconds: float, ceiling: float) -> float:
    """A delay JetStream can use: finite, >= 0, <= ceiling (NaN counts as 'no wait')."""
    if seconds != seconds or seconds <= 0:  # NaN or negative
        return 0.0
    return min(seconds, ceiling)


class PullConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        handler: Handler,
        concurrency: int = 4,
        fetch_timeout: float = 2.0,
        shutdown_grace: float = 30.0,
        name: str = "consumer",
    ) -> None:
        self._js = js
        self._stream = stream
        self._durable = durable
        self._handler = handler
        self._concurrency = max(1, concurrency)
        # Both come from the server's consumer config at start: the durable, not our defaults,
        # decides when an unacknowledged message is redelivered.
        self._heartbeat = 5.0
        self._max_deliver = 0
        self._fetch_timeout = fetch_timeout
        self._shutdown_grace = shutdown_grace
        self._name = name
        self._slots = asyncio.Semaphore(self._concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._pause_seconds = 0.0
        self._probe: Probe | None = None
        self.processed = 0

    @property
    def paused(self) -> bool:
        return self._paused_until > asyncio.get_running_loop().time()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle messages until `stop` is set, then finish or hand back in-flight work."""
        sub = await self._bind()
        log.info(
            "consumer_started",
            consumer=self._durable,
            concurrency=self._concurrency,
            heartbeat=self._heartbeat,
            max_deliver=self._max_deliver,
        )
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                wait = self._paused_until - loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                    continue
                if self._probe is not None and not stop.is_set():
                    await self._check_probe(loop)
                    continue
                free = await self._wait_for_free_slots(stop)
                if free == 0:
                    continue
                msgs = await self._fetch(sub, free)
                for msg in msgs:
                    self._spawn(msg)
        finally:
            await sub.unsubscribe()
            await self._drain()
            log.info("consumer_stopped", consumer=self._durable, processed=self.processed)

    async def _check_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of a pause: resume only if the probe says the cause is gone."""
        probe = self._probe
        assert probe is not None
        try:
            ok = await probe()
        except Exception:
            log.exception("pause_probe_crashed", consumer=self._durable)
            ok = False
        if ok:
            self._probe = None
            log.warning("consumer_resumed", consumer=self._durable)
            return
        self._paused_until = loop.time() + self._pause_seconds
        log.error("consumer_still_paused", consumer=self._durable, seconds=self._pause_seconds)

    async def run_until_idle(self) -> int:
        """Handle everything currently pending, then return how many were handled (for tests and
        burst runs: no sleeping, no background task)."""
        sub = await self._bind()
        before = self.processed
        try:
            while True:
                msgs = await self._fetch(sub, self._concurrency, timeout=0.5)
                if not msgs:
                    break
                for msg in msgs:
                    self._spawn(msg)
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            await sub.unsubscribe()
        return self.processed - before

    async def _bind(self) -> JetStreamContext.PullSubscription:
        info = await self._js.consumer_info(self._stream, self._durable)
        ack_wait = float(info.config.ack_wait or 30.0)
        self._heartbeat = max(ack_wait / 3.0, 0.2)
        self._max_deliver = int(info.config.max_deliver or 0)
        if self._max_deliver < 0:
            self._max_deliver = 0
        return await self._js.pull_subscribe_bind(self._durable, self._stream)

    async def _wait_for_free_slots(self, stop: asyncio.Event) -> int:
        free = self._concurrency - len(self._tasks)
        if free > 0:
            return free
        done_wait = asyncio.ensure_future(
            asyncio.wait(set(self._tasks), return_when="FIRST_COMPLETED")
        )
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({done_wait, stop_wait}, return_when="FIRST_COMPLETED")
        finally:
            done_wait.cancel()
            stop_wait.cancel()
        return 0

    async def _fetch(
        self, sub: JetStreamContext.PullSubscription, n: int, timeout: float | None = None
    ) -> list[Msg]:
        try:
            return list(await sub.fetch(n, timeout=timeout or self._fetch_timeout))
        except (NatsTimeoutError, TimeoutError):
            # nats-py also raises the builtin TimeoutError when the pull's deadline runs out
            # (busy loop): an empty fetch, not an outage worth a warning and a 1 s sleep.
            return []
        except (NatsError, OSError) as exc:
            # NATS down or reconnecting: the client reconnects by itself; do not spin.
            log.warning("consumer_fetch_failed", consumer=self._durable, error=str(exc))
            await asyncio.sleep(1.0)
            return []

    def _spawn(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        delivery = Delivery(
            msg=msg,
            subject=msg.subject,
            data=msg.data,
            num_delivered=meta.num_delivered,
            max_deliver=self._max_deliver,
            stream_seq=meta.sequence.stream,
        )
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        error: BaseException | None = None
        try:
            with structlog.contextvars.bound_contextvars(stream_seq=delivery.stream_seq):
                await self._handler(delivery)
        except asyncio.CancelledError as exc:
            error = exc
        except Exception as exc:
            error = exc
            if not isinstance(exc, Retry | Reject | Pause):
                log.exception(
                    "handler_crashed", consumer=self._durable, stream_seq=delivery.stream_seq
                )
        finally:
            heartbeat.cancel()
        await self.settle(delivery, error)
        if isinstance(error, asyncio.CancelledError):
            raise error

    async def settle(self, delivery: Delivery, error: BaseException | None) -> None:
        outcome, delay = decide(error, delivery)
        if isinstance(error, Pause):
            loop = asyncio.get_running_loop()
            seconds = clamp_delay(error.seconds, MAX_PAUSE)
            self._paused_until = max(self._paused_until, loop.time() + seconds)
            self._pause_seconds = seconds
            if error.probe is not None:
                self._probe = error.probe
            log.error(
                "consumer_paused",
                consumer=self._durable,
                seconds=seconds,
                reason=str(error),
                requeued=error.requeued,
            )
        try:
            if outcome is Outcome.ACK:
                await delivery.msg.ack()
            elif outcome is Outcome.TERM:
                await delivery.msg.term()
            else:
                await delivery.msg.nak(delay=delay)
        except (NatsError, OSError) as exc:
            # The ack is lost; the message comes back after AckWait and the handler is idempotent.
            log.warning(
                "settle_failed", consumer=self._durable, outcome=outcome.value, error=str(exc)
            )
        self.processed += 1

    async def _keep_alive(self, msg: Msg) -> None:
        # Long jobs (a 20-minute transcription) must not be redelivered to a second worker.
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await msg.in_progress()
            except (NatsError, OSError) as exc:
                log.warning("heartbeat_failed", consumer=self._durable, error=str(exc))

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self._shutdown_grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
