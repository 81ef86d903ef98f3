"""Long audio under a redaction policy: the resumable chunks saved in Postgres between attempts
hold redacted transcripts only, and the completed job is redacted like any other."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web

from libs.bus import Retry
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.redaction import Policy
from libs.settings import Settings
from services.transcriber.engines.openai.models import LIMITS
from services.transcriber.longaudio import SplitPolicy
from tests.fakes.openai_server import FakeOpenAIServer, Fault, RecordedRequest, openai_error
from tests.integration.transcriber import harness
from tests.integration.transcriber.test_long_audio import long_recording
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

SAID = (
    "please take the card four one one one one one one one one one one one one one one one thanks"
)
POLICY = SplitPolicy(chunk_seconds=300, search_seconds=60, overlap_seconds=1.0, chunk_concurrency=3)


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    """A database of its own, as in test_handler: no other relay or worker sees these jobs."""
    ours = replace(settings, database_url=await create_database(postgres_server, "rc"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text=SAID) as server:
        yield server


async def test_saved_chunks_are_redacted_and_so_is_the_result(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    audio, _ = long_recording(12, seed=7)
    limits = msgspec.structs.replace(LIMITS, max_seconds=300.0)
    async with harness.transcriber(settings, pool, fake, split_policy=POLICY, limits=limits) as (
        worker,
        store,
    ):
        job = await harness.make_job(pool, store, audio)
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1",
            uuid.UUID(job.id),
            Policy.parse("pci").spec,
        )
        fake.fail_next(Fault.server_error(retry_after=0))
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(job.event))
        saved = await pool.fetch(
            "SELECT transcript FROM media_pipeline.transcription_chunks WHERE audio_file_id = $1",
            uuid.UUID(job.id),
        )
        assert saved
        for row in saved:
            text = json.dumps(row["transcript"])
            assert "four one one one" not in text and "[CREDIT_CARD]" in text
        await worker.handle(harness.delivery(job.event, attempt=2))
    row = await pool.fetchrow(
        "SELECT text, redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(job.id),
    )
    assert "four one one one" not in row["text"]
    assert row["redaction"]["counts"] == {"credit_card": 3}


# A card number read across the cut between chunk 0 and chunk 1 (the pause a caller makes while
# reading is a silence, where chunks are cut): eight digits on each side, no card on its own.
ACROSS = {
    0: "please take the card number four one one one one one one one",
    1: "one one one one one one one one thanks",
    2: "that is all for today",
}
SAID_DIGITS = re.compile(r"\b(four|one)\b")


class SeamFake(FakeOpenAIServer):
    """Says ACROSS[k] for chunk k (the worker names the chunk files `...-chunk-<k>.<ext>`);
    chunk 2 fails once, so chunks 0 and 1 stay saved for the next attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_chunk_2 = True

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        found = re.search(r"-chunk-(\d+)\.", record.filename or "")
        index = int(found.group(1)) if found else -1
        if index == 2 and self.fail_chunk_2:
            self.fail_chunk_2 = False
            error = openai_error("The server had an error.", type="server_error")
            return web.json_response(error, status=500, headers={"retry-after": "0"})
        text = ACROSS[index]
        return web.json_response(
            {
                "text": text,
                "segments": [
                    {
                        "id": 0,
                        "start": 0.5,
                        "end": 0.5 + 0.4 * len(text.split()),
                        "text": " " + text,
                    }
                ],
                "duration": 300.0,
                "language": "english",
            }
        )


async def test_a_card_read_across_a_chunk_cut_is_in_no_saved_chunk(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    audio, _ = long_recording(12, seed=7)
    limits = msgspec.structs.replace(LIMITS, max_seconds=300.0)
    async with (
        SeamFake() as fake,
        harness.transcriber(settings, pool, fake, split_policy=POLICY, limits=limits) as (
            worker,
            store,
        ),
    ):
        job = await harness.make_job(pool, store, audio)
        await pool.execute(
            "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1",
            uuid.UUID(job.id),
            Policy.parse("pci").spec,
        )
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(job.event))
        saved = await pool.fetch(
            "SELECT chunk_index, transcript FROM media_pipeline.transcription_chunks"
            " WHERE audio_file_id = $1 ORDER BY chunk_index",
            uuid.UUID(job.id),
        )
        assert [row["chunk_index"] for row in saved] == [0, 1]
        for row in saved:
            texts = [row["transcript"]["text"]] + [s["text"] for s in row["transcript"]["segments"]]
            for text in texts:
                assert SAID_DIGITS.search(text) is None, text
        assert saved[0]["transcript"]["text"] == "please take the card number [CREDIT_CARD]"
        await worker.handle(harness.delivery(job.event, attempt=2))
    row = await pool.fetchrow(
        "SELECT text, redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(job.id),
    )
    assert SAID_DIGITS.search(row["text"]) is None, row["text"]
    assert row["text"].endswith("[CREDIT_CARD] thanks that is all for today")
    # Resumed from the saved chunks, each masked half counts: an over-count, never a leak.
    assert row["redaction"]["counts"] == {"credit_card": 2}
