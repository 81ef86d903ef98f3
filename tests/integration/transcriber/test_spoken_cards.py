"""Issue 24 through the offline engine on speech: a card number read aloud (espeak-ng, see
tests/fixtures/spoken_cards.py), transcribed by Whisper as the attack run saw it ("4-1-1-1-…",
with hallucinated digits past the sixteen said, failing Luhn), then redacted by the job's
policy. On a mono recording and on a stereo call where the agent speaks inside the number and
the customer pauses more than a second: no digit reaches any view, and the beeped audio covers
the card from its first digit to its last."""

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

from libs.layout import redacted_audio_key
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.redaction import Policy, RedactionRecord
from libs.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fixtures.spoken_cards import CARD_MONO, CARD_STEREO
from tests.integration.transcriber import harness
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

POLICY = Policy.parse("pci", audio="beep").spec
DIGIT = re.compile(r"\d|\b(?:one|four)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    ours = replace(settings, database_url=await create_database(postgres_server, "spoken"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:  # never asked: model=offline
        yield server


def _subtitle_text(body: str) -> str:
    return "\n".join(
        line for line in body.splitlines() if "-->" not in line and not line.strip().isdigit()
    )


def _no_digits(where: str, text: str) -> None:
    found = DIGIT.search(text)
    assert found is None, f"{found.group()!r} of the card in {where}: {text[:300]}"


async def _run(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer, audio: bytes, **job: Any
) -> tuple[dict[str, str], RedactionRecord, bytes]:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        made = await harness.make_job(
            pool, store, audio, model="offline", timestamps="word", redact=POLICY, **job
        )
        await worker.handle(harness.delivery(made.event))
        state = await harness.job_state(pool, made.id)
        assert state["status"] == "completed", state
        stem = made.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
        files = {
            fmt: (await store.get_bytes(f"camp/transcriptions/{fmt}/{stem}.{fmt}")).decode()
            for fmt in ("json", "txt", "srt", "vtt")
        }
        beeped = await store.get_bytes(redacted_audio_key(made.key))
        stored = await pool.fetchrow(
            "SELECT text, redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
            uuid.UUID(made.id),
        )
    assert not fake.requests
    _no_digits("row text", stored["text"])
    return files, msgspec.convert(stored["redaction"], RedactionRecord), beeped


def _check_views(files: dict[str, str]) -> dict[str, Any]:
    transcript = json.loads(files["json"])
    _no_digits("json text", transcript["text"])
    for segment in transcript["segments"]:
        _no_digits("json segment", segment["text"])
    for word in transcript["words"]:
        _no_digits("json word", word["word"])
    for utterance in transcript.get("utterances", ()):
        _no_digits("json utterance", utterance["text"])
        for word in utterance["words"] or ():
            _no_digits("json utterance word", word["word"])
    _no_digits("txt", files["txt"])
    _no_digits("srt", _subtitle_text(files["srt"]))
    _no_digits("vtt", _subtitle_text(files["vtt"]))
    assert "[CREDIT_CARD]" in transcript["text"]
    return transcript


async def test_a_card_read_aloud_is_redacted_in_every_view_and_beeped(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    files, record, beeped = await _run(settings, pool, fake, CARD_MONO.read_bytes())
    transcript = _check_views(files)
    assert "[CVV]" in transcript["text"]
    assert record.counts == {"credit_card": 1, "cvv": 1} and record.timing == "words"
    card = next(s for s in record.spans if s.cls == "credit_card")
    assert card.start is not None and card.end is not None
    # Sixteen digits read at 140 words a minute take about six seconds.
    assert card.end - card.start > 5
    harness.assert_beeped(beeped, card.start, card.end)


async def test_a_card_read_across_the_agents_words_on_a_stereo_call(
    settings: Settings, pool: asyncpg.Pool, fake: FakeOpenAIServer
) -> None:
    files, record, beeped = await _run(
        settings, pool, fake, CARD_STEREO.read_bytes(), multichannel="true"
    )
    transcript = _check_views(files)
    # The agent asks, the customer reads (one utterance, across the pause), and the agent's
    # "Got it, go on." comes while the customer's utterance is still going on.
    assert [u["channel"] for u in transcript["utterances"]] == [0, 1, 0]
    customer = transcript["utterances"][1]
    assert customer["start"] < transcript["utterances"][2]["start"] < customer["end"]
    assert record.counts == {"credit_card": 1}
    (card,) = record.spans
    assert card.start is not None and card.end is not None
    # From the first digit (the customer starts reading at about 3.8 s) past the pause and the
    # agent's words to the last digit (after 12 s).
    assert card.start < 5.0 and card.end > 12.0
    harness.assert_beeped(beeped, card.start, card.end)
