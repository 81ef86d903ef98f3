"""Building blocks for notifier tests: a customer's receiver that verifies with the reference
`standardwebhooks` package, jobs written straight into Postgres, events published on the real
stream, and a notifier running as in production with an injected (short) retry schedule."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
from aiohttp import web
from nats.js import JetStreamContext
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs import apikeys
from libs.contracts import (
    TranscriptionFailed,
    TranscriptKeys,
    TranscriptReady,
    encode,
    new_event_id,
    subjects,
    utcnow,
)
from libs.mail import Mailer
from libs.settings import Settings
from services.notifier import main as notifier_main
from services.notifier.policy import DeliveryPolicy
from tests.stack_fixtures import free_port

# A schedule short enough for tests, long enough to tell "waited" from "did not wait".
FAST = DeliveryPolicy(schedule=(0.2, 0.2, 0.2), jitter=0.0)


@dataclass
class Hit:
    at: float
    path: str
    status: int
    headers: dict[str, str]
    payload: dict[str, Any] | None
    verified: bool
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint on a fixed loopback port that can go down and come back."""

    secret: str
    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    # Answers to give before the default (verify, then 200): (status, headers).
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    # While set and closed, every request waits for it: a receiver that hangs.
    gate: asyncio.Event | None = None
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            if self.gate is not None:
                await self.gate.wait()
            headers = dict(request.headers)
            try:
                # The secret is read per request: tests learn it after the receiver is up.
                payload: dict[str, Any] | None = Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                payload, verified = None, False
            if self.script:
                status, extra = self.script.pop(0)
            else:
                status, extra = (200 if verified else 400), {}
            async with self._changed:
                self.hits.append(
                    Hit(time.monotonic(), request.path, status, headers, payload, verified, body)
                )
                self._changed.notify_all()
            return web.Response(status=status, headers=extra)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        return app

    async def up(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def accepted(self, webhook_id: str | None = None) -> list[Hit]:
        return [
            h
            for h in self.hits
            if h.verified
            and 200 <= h.status < 300
            and (webhook_id is None or h.headers.get("webhook-id") == webhook_id)
        ]

    def for_job(self, audio_file_id: str) -> list[Hit]:
        return [
            h
            for h in self.hits
            if h.payload and h.payload["data"].get("audio_file_id") == audio_file_id
        ]

    async def wait_hits(self, audio_file_id: str, count: int, timeout: float = 15.0) -> list[Hit]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.for_job(audio_file_id)) >= count),
                timeout,
            )
        return self.for_job(audio_file_id)

    async def wait_accepted(
        self, webhook_id: str, count: int = 1, timeout: float = 15.0
    ) -> list[Hit]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.accepted(webhook_id)) >= count), timeout
            )
        return self.accepted(webhook_id)

    async def wait_any(self, count: int, timeout: float = 15.0) -> list[Hit]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.hits) >= count), timeout)
        return self.hits


@asynccontextmanager
async def receiver(secret: str) -> AsyncIterator[Receiver]:
    """A receiver; on leaving, every request it got must have verified (with the secret it
    held then): there is no unsigned delivery."""
    r = Receiver(secret=secret)
    await r.up()
    try:
        yield r
    finally:
        await r.down()
    unverified = [h for h in r.hits if not h.verified]
    assert not unverified, f"{len(unverified)} deliveries did not verify: {unverified[0]}"


@dataclass(frozen=True)
class Key:
    id: uuid.UUID
    raw: str
    tenant: str
    secret: str


async def make_key(
    pool: asyncpg.Pool, *, webhook_url: str | None, secret: str | None = None
) -> Key:
    """A key as `transcribe keys create` makes it: without `secret`, the secret is the one
    generated at creation (every key has one)."""
    tenant = f"nt{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        raw, key = await apikeys.create(
            conn, name=tenant, tenant_prefix=tenant, webhook_url=webhook_url, webhook_secret=secret
        )
    assert key.webhook_secret.startswith("whsec_")
    return Key(uuid.UUID(key.id), raw, tenant, key.webhook_secret)


INSERT_JOB = """
INSERT INTO media_pipeline.audio_files
    (id, api_key_id, tenant_prefix, phone, campaign_name, recording_id, bucket, b2_object_key,
     content_type, size_bytes, sha256, callback_url, status)
VALUES ($1, $2, $3, '+441632960001', 'notifier-tests', $4, 'test-bucket', $5, 'audio/wav', 1,
        'x', $6, $7)
"""
INSERT_TRANSCRIPTION = """
INSERT INTO media_pipeline.transcriptions
    (audio_file_id, model, engine, text, word_count, b2_transcript_json_key, b2_transcript_txt_key)
VALUES ($1, 'offline', 'offline', $2, 3, $3, $4)
"""


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    key: Key
    recording_id: str

    @property
    def json_key(self) -> str:
        return f"{self.key.tenant}/notifier-tests/transcriptions/json/{self.id}.json"

    @property
    def txt_key(self) -> str:
        return f"{self.key.tenant}/notifier-tests/transcriptions/txt/{self.id}.txt"


async def make_job(
    pool: asyncpg.Pool,
    key: Key,
    *,
    callback_url: str | None = None,
    completed: bool = True,
    text: str = "hello this is a test",
) -> Job:
    job = Job(uuid.uuid4(), key, f"rec-{uuid.uuid4().hex[:6]}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_JOB,
            job.id,
            key.id,
            key.tenant,
            job.recording_id,
            f"{key.tenant}/notifier-tests/audio/{job.id}.wav",
            callback_url,
            "completed" if completed else "failed",
        )
        if completed:
            await conn.execute(INSERT_TRANSCRIPTION, job.id, text, job.json_key, job.txt_key)
    return job


def ready_event(job: Job, event_id: str | None = None) -> TranscriptReady:
    return TranscriptReady(
        event_id=event_id or new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=str(job.id),
        tenant=job.key.tenant,
        model="offline",
        engine="offline",
        language="en",
        duration=1.5,
        keys=TranscriptKeys(json=job.json_key, txt=job.txt_key),
        word_count=3,
        recording_id=job.recording_id,
    )


def failed_event(job: Job) -> TranscriptionFailed:
    return TranscriptionFailed(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=str(job.id),
        tenant=job.key.tenant,
        error_code="undecodable_audio",
        detail="the file is not audio",
        attempts=1,
        permanent=True,
        recording_id=job.recording_id,
    )


async def publish(
    js: JetStreamContext, event: TranscriptReady | TranscriptionFailed, *, msg_id: bool = True
) -> None:
    """As the outbox relay does (Nats-Msg-Id = event id); msg_id=False is a replay with
    `nats pub`, which JetStream does not de-duplicate."""
    subject = (
        subjects.transcript_ready(event.tenant)
        if isinstance(event, TranscriptReady)
        else subjects.transcript_failed(event.tenant)
    )
    headers = {"Nats-Msg-Id": event.event_id} if msg_id else None
    await js.publish(subject, encode(event), headers=headers)


@dataclass
class Notifier:
    """`services.notifier.main.run` as a task; restartable like a process."""

    settings: Settings
    policy: DeliveryPolicy = FAST
    task: asyncio.Task[None] | None = None
    stop_event: asyncio.Event | None = None
    # Where notification e-mails go (tests/integration/notifier/test_notifications.py).
    mailer: Mailer | None = None

    def start(self) -> None:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(
            notifier_main.run(
                self.settings, self.stop_event, policy=self.policy, mailer=self.mailer
            )
        )

    async def stop(self) -> None:
        if self.task is None or self.stop_event is None:
            return
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)
        self.task = None

    def configure(self, *allow: str, policy: DeliveryPolicy | None = None) -> Notifier:
        """Exempt these receivers' host:port from the SSRF block; optionally a new policy."""
        self.settings = replace(self.settings, ssrf_allowlist=",".join(allow))
        if policy is not None:
            self.policy = policy
        return self


async def delivery_rows(pool: asyncpg.Pool, job: Job) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM media_pipeline.webhook_deliveries WHERE audio_file_id = $1 ORDER BY id",
        job.id,
    )


async def attempt_rows(pool: asyncpg.Pool, delivery_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM media_pipeline.webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
        delivery_id,
    )
