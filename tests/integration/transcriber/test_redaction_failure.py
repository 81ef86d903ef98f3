"""A redaction that cannot finish fails closed: when it raises (RecursionError on a
pathological transcript) or runs past REDACTION_TIMEOUT_SECONDS, nothing of the transcript is
stored (no object, no row, no text in any table) or sent, and the job fails permanently with
`redaction_failed` after one transcription, instead of ten retries that each pay for it again.

The redaction is replaced here by one that fails on purpose (the real detectors are being made
linear, so no input can be relied on to break them); it runs where the real one does, in a
worker thread, under the same bound."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs.bus import Reject
from libs.layout import transcript_keys, unredacted_transcript_key
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.redaction import Policy, RedactionReport
from libs.settings import Settings
from libs.transcript import Transcript
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.transcriber import harness
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

SPEECH = (Path(__file__).parents[2] / "fixtures" / "hello_campaign.wav").read_bytes()
SAID = "my card is four one one one one one one one one one one one one one one one"


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    ours = replace(settings, database_url=await create_database(postgres_server, "redfail"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text=SAID) as server:
        yield server


def _raises(transcript: Transcript, policy: Policy, **_: Any) -> tuple[Transcript, RedactionReport]:
    raise RecursionError("maximum recursion depth exceeded")


class _Stuck:
    """A redaction that does not finish until released (after the test has its answer)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(
        self, transcript: Transcript, policy: Policy, **_: Any
    ) -> tuple[Transcript, RedactionReport]:
        self.release.wait(60)
        raise RecursionError("released")


async def _fails_closed(
    settings: Settings,
    pool: asyncpg.Pool,
    fake: FakeOpenAIServer,
    redactor: Callable[..., tuple[Transcript, RedactionReport]],
    timeout: float,
) -> str:
    async with harness.transcriber(
        settings, pool, fake, redactor=redactor, redaction_timeout=timeout
    ) as (worker, store):
        job = await harness.make_job(pool, store, SPEECH)
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1",
            uuid.UUID(job.id),
            Policy.parse("pci", keep="both").spec,
        )
        with pytest.raises(Reject):
            await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        assert (state["status"], state["failure"], state["error_code"]) == (
            "failed",
            "permanent",
            "redaction_failed",
        )
        assert (state["text"], state["ready_events"], state["failed_events"]) == (None, 0, 1)
        keys = transcript_keys(job.key, campaign="camp")
        original = unredacted_transcript_key(job.key, campaign="camp")
        for key in (keys.json, keys.txt, keys.srt, keys.vtt, original):
            assert key is None or not await store.exists(key), key
        # A redelivery (JetStream's, or a replay) does not transcribe it again.
        await worker.handle(harness.delivery(job.event, attempt=2))
    assert len(fake.requests) == 1
    detail = await pool.fetchval(
        "SELECT error FROM media_pipeline.transcription_failures WHERE audio_file_id = $1",
        uuid.UUID(job.id),
    )
    assert "four one" not in detail
    return str(detail)


async def test_a_redaction_that_raises_fails_the_job_permanently(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    detail = await _fails_closed(settings, pool, fake, _raises, timeout=60.0)
    assert "RecursionError" in detail


async def test_a_redaction_past_its_deadline_fails_the_job_permanently(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    stuck = _Stuck()
    try:
        detail = await _fails_closed(settings, pool, fake, stuck, timeout=0.5)
    finally:
        stuck.release.set()
    assert "did not finish within 0.5 s" in detail
