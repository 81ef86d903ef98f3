"""Jobs as ingest leaves them (row + stored audio), and a Transcriber wired to real Postgres and
S3 with the OpenAI engine pointed at the fake server."""

from __future__ import annotations

import functools
import hashlib
import io
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import numpy as np

from libs.blobstore import S3BlobStore
from libs.bus import Delivery
from libs.contracts import AudioStored, encode, new_event_id, subjects, utcnow
from libs.settings import Settings
from services.transcriber.engines import Engines, UploadLimits
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.engines.whisper import FasterWhisperEngine
from services.transcriber.longaudio import SplitPolicy
from services.transcriber.worker import Transcriber
from tests.fakes.openai_server import FakeOpenAIServer


@functools.cache
def offline_engine() -> FasterWhisperEngine:
    """One offline engine for the test process: its model loads once, on the first job."""
    return FasterWhisperEngine()


INSERT_JOB = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, campaign_name, bucket,
    b2_object_key, content_type, size_bytes, sha256, model, timestamps, phone, redact)
SELECT $1, id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
FROM media_pipeline.api_keys WHERE is_bootstrap ORDER BY created_at LIMIT 1
"""


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    key: str
    event: AudioStored


async def make_job(
    pool: asyncpg.Pool,
    store: S3BlobStore,
    audio: bytes,
    *,
    ext: str = "wav",
    tenant: str | None = None,
    model: str | None = None,
    timestamps: str = "segment",
    multichannel: str = "false",
    channel_roles: list[str] | None = None,
    phone: str = "15550001",
    redact: str = "",
) -> Job:
    """`phone` goes into the object key, as ingest lays it out; `redact` is a Policy.spec."""
    job_id = str(uuid.uuid4())
    tenant = tenant if tenant is not None else f"t4-{uuid.uuid4().hex[:8]}"
    key = f"{tenant}/camp/audio/{phone}/{job_id}.{ext}"
    await store.put_bytes(key, audio, "audio/wav")
    sha = hashlib.sha256(audio).hexdigest()
    await pool.execute(
        INSERT_JOB,
        uuid.UUID(job_id),
        tenant,
        "camp",
        store.bucket,
        key,
        "audio/wav",
        len(audio),
        sha,
        model,
        timestamps,
        "+" + phone,
        redact,
    )
    event = AudioStored(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=job_id,
        tenant=tenant,
        campaign="camp",
        storage_key=key,
        content_type="audio/wav",
        size=len(audio),
        sha256=sha,
        model=model,
        timestamps=timestamps,
        multichannel=multichannel,
        channel_roles=channel_roles,
        redact=redact,
    )
    return Job(id=job_id, tenant=tenant, key=key, event=event)


def delivery(event: AudioStored, *, attempt: int = 1, max_deliver: int = 10) -> Delivery:
    """A delivery for calling the handler directly (it never touches the message itself)."""
    return Delivery(
        msg=cast(Any, None),
        subject=subjects.audio_stored(event.tenant),
        data=encode(event),
        num_delivered=attempt,
        max_deliver=max_deliver,
        stream_seq=1,
    )


@asynccontextmanager
async def transcriber(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: FakeOpenAIServer,
    *,
    split_policy: SplitPolicy | None = None,
    skip_tenants: tuple[str, ...] = (),
    timeout: float = 30.0,
    api_key: str | None = None,
    limits: UploadLimits = LIMITS,
    wrap_store: Callable[[S3BlobStore], Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Transcriber, S3BlobStore]]:
    """`wrap_store`: what the transcriber gets instead of the bucket (the test gets the bucket).
    `options`: further Transcriber keywords (redaction_timeout, redactor)."""
    engine = OpenAIEngine(
        build_client(api_key or fake.api_key, fake.base_url, timeout), limits=limits
    )
    try:
        async with S3BlobStore.open(settings.require_s3()) as store:
            yield (
                Transcriber(
                    pool,
                    store if wrap_store is None else wrap_store(store),
                    Engines(default=engine, offline=offline_engine()),
                    split_policy=split_policy,
                    skip_tenants=skip_tenants,
                    **options,
                ),
                store,
            )
    finally:
        await engine.aclose()


async def job_state(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        """
        SELECT a.status, a.attempts, t.text, t.metadata, t.raw_response,
               f.status AS failure, f.error_code, f.cooldown_until,
               (SELECT count(*) FROM media_pipeline.outbox o
                 WHERE o.subject LIKE 'transcribe.transcript.ready.%'
                   AND convert_from(o.payload, 'UTF8')::jsonb->>'audio_file_id' = $1::text)
                 AS ready_events,
               (SELECT count(*) FROM media_pipeline.outbox o
                 WHERE o.subject LIKE 'transcribe.transcript.failed.%'
                   AND convert_from(o.payload, 'UTF8')::jsonb->>'audio_file_id' = $1::text)
                 AS failed_events,
               (SELECT count(*) FROM media_pipeline.transcription_chunks c
                 WHERE c.audio_file_id = a.id) AS chunks
        FROM media_pipeline.audio_files a
        LEFT JOIN media_pipeline.transcriptions t ON t.audio_file_id = a.id
        LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id
        WHERE a.id = $1::uuid
        """,
        job_id,
    )
    assert row is not None
    return dict(row)


def assert_beeped(wav_bytes: bytes, start: float, end: float) -> None:
    """Every tenth of a second of [start, end) of the redacted WAV is the 1 kHz beep."""
    with wave.open(io.BytesIO(wav_bytes), "rb") as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    window = rate // 10
    for at in np.arange(start, end - 0.1, 0.1):
        part = samples[int(at * rate) : int(at * rate) + window].astype(np.float64)
        peak = np.argmax(np.abs(np.fft.rfft(part))) * rate / len(part)
        assert abs(peak - 1000) <= 10, f"no beep at {at:.1f} s ({peak:.0f} Hz)"
