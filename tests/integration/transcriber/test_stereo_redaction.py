"""Issue 24's stereo call: the customer reads a card number on channel 1, pausing (more than a
second) and interrupted by the agent's "got it" on channel 0. Each channel's request is
answered by the project's OpenAI-compatible fake with that channel's own words and times, as
Whisper answers them. No digit of the card may reach any view (the JSON's text, segments,
words, utterances and their words; txt, srt, vtt; the row, the saved chunks, the event and the
webhook built from them), and the beep must cover the card from its first digit to its last.

Before speaker-by-speaker redaction, the words merged by time read "four one one one got it
one one one ...": no card, nothing redacted, and the audio kept the card audible."""

from __future__ import annotations

import io
import json
import re
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest
from aiohttp import web

from libs.bus import Retry
from libs.contracts import TranscriptReady
from libs.layout import redacted_audio_key
from libs.provision import ensure_bootstrap_key, migrate_database
from libs.redaction import Policy, RedactionRecord
from libs.settings import Settings
from libs.webhooks import queue
from libs.webhooks.payload import completed_body
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest, openai_error
from tests.integration.transcriber import harness
from tests.stack_fixtures import create_database

pytestmark = pytest.mark.integration

RATE = 16_000
DURATION = 14.0
Said = list[tuple[float, float, str]]


def _say(start: float, text: str, step: float = 0.4) -> Said:
    return [
        (round(start + i * step, 2), round(start + i * step + 0.3, 2), w)
        for i, w in enumerate(text.split())
    ]


AGENT: Said = _say(0.2, "can I take your card number") + _say(4.8, "got it") + _say(12.4, "thanks")
DIGITS_1 = _say(2.6, "four one one one")
# 2.3 s of silence after "one" at 3.8-4.1, the agent's "got it" in the middle of it.
DIGITS_2 = _say(6.4, "one one one one one one one one one one one one")
CUSTOMER: Said = _say(1.2, "yes it is") + DIGITS_1 + DIGITS_2 + _say(11.5, "okay")
FIRST_DIGIT, LAST_DIGIT = DIGITS_1[0][0], DIGITS_2[-1][1]
# In a text field, the card's words or digits; in a JSON document (whose ids, channels and
# times are digits by design), its words.
CARD_WORDS = re.compile(r"\b(four|one|4|1)\b", re.IGNORECASE)
CARD_SAID = re.compile(r"\b(four|one)\b", re.IGNORECASE)


def _segments(said: Said) -> list[dict[str, Any]]:
    """Whisper's segments: a new one after a pause of more than a second."""
    groups: list[Said] = []
    for word in said:
        if not groups or word[0] - groups[-1][-1][1] > 1.0:
            groups.append([])
        groups[-1].append(word)
    return [
        {"id": i, "start": g[0][0], "end": g[-1][1], "text": " " + " ".join(w for _, _, w in g)}
        for i, g in enumerate(groups)
    ]


class ChannelFake(FakeOpenAIServer):
    """Answers each channel's request (the worker names them `...-ch<k>.wav`) with that
    channel's words and segments, timed from the recording's start, as verbose_json."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_once: set[str] = set()

    def _success(self, record: RecordedRequest, audio: bytes) -> web.Response:
        channel = (record.filename or "").rsplit(".", 1)[0][-3:]
        if channel in self.fail_once:
            self.fail_once.discard(channel)
            error = openai_error("The server had an error.", type="server_error")
            return web.json_response(error, status=500, headers={"retry-after": "0"})
        said = {"ch0": AGENT, "ch1": CUSTOMER}[channel]
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": "english",
            "duration": DURATION,
            "text": " ".join(w for _, _, w in said),
            "segments": _segments(said),
        }
        if "word" in record.timestamp_granularities:
            body["words"] = [{"word": w, "start": s, "end": e} for s, e, w in said]
        return web.json_response(body)


def _stereo_call() -> bytes:
    """Each channel a tone where its speaker talks (300 Hz agent, 500 Hz customer)."""
    t = np.arange(int(DURATION * RATE)) / RATE
    tracks = np.zeros((2, t.size))
    for channel, (said, hz) in enumerate(((AGENT, 300.0), (CUSTOMER, 500.0))):
        for start, end, _ in said:
            at = slice(int(start * RATE), int(end * RATE))
            tracks[channel, at] = 0.3 * np.sin(2 * np.pi * hz * t[at])
    pcm = (tracks.T * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return out.getvalue()


@pytest.fixture(scope="module")
async def settings(settings: Settings, postgres_server: Any) -> Settings:
    """A database of its own: no relay or worker of another test sees these jobs."""
    ours = replace(settings, database_url=await create_database(postgres_server, "stereo"))
    await migrate_database(ours.require_database_url())
    await ensure_bootstrap_key(ours)
    return ours


@pytest.fixture
async def fake() -> AsyncIterator[ChannelFake]:
    async with ChannelFake() as server:
        yield server


POLICY = Policy.parse("pci", audio="beep")


async def _job(pool: asyncpg.Pool, store: Any) -> harness.Job:
    job = await harness.make_job(
        pool, store, _stereo_call(), timestamps="word", multichannel="true"
    )
    await pool.execute(
        "UPDATE media_pipeline.audio_files SET redact = $2 WHERE id = $1",
        uuid.UUID(job.id),
        POLICY.spec,
    )
    return job


def _clean(where: str, text: str, pattern: re.Pattern[str] = CARD_WORDS) -> None:
    found = pattern.search(text)
    assert found is None, f"{found.group()!r} of the card in {where}: {text[:400]}"


def _clean_json(transcript: dict[str, Any]) -> None:
    _clean("json text", transcript["text"])
    for segment in transcript["segments"]:
        _clean("json segment", segment["text"])
    for word in transcript["words"]:
        _clean("json word", word["word"])
    for utterance in transcript.get("utterances", ()):
        _clean("json utterance", utterance["text"])
        for word in utterance["words"]:
            _clean("json utterance word", word["word"])


def _subtitle_text(body: str) -> str:
    """The cue texts of an srt or vtt (their indexes and timestamps are digits by design)."""
    return "\n".join(
        line for line in body.splitlines() if "-->" not in line and not line.strip().isdigit()
    )


async def _check_views(pool: asyncpg.Pool, store: Any, job: harness.Job) -> RedactionRecord:
    stem = job.key.split("/audio/", 1)[1].rsplit(".", 1)[0]
    files = {
        fmt: (await store.get_bytes(f"camp/transcriptions/{fmt}/{stem}.{fmt}")).decode()
        for fmt in ("json", "txt", "srt", "vtt")
    }
    transcript = json.loads(files["json"])
    _clean_json(transcript)
    assert "[CREDIT_CARD]" in transcript["text"]
    assert [u["channel"] for u in transcript["utterances"]][:3] == [0, 1, 0]
    _clean("txt", files["txt"])
    _clean("srt", _subtitle_text(files["srt"]))
    _clean("vtt", _subtitle_text(files["vtt"]))
    assert "Customer: yes it is [CREDIT_CARD]" in files["txt"]
    row = await pool.fetchrow(
        "SELECT t.text, t.metadata::text AS metadata, t.redaction, a.recording_id,"
        " a.campaign_name, a.phone, a.b2_object_key FROM media_pipeline.transcriptions t"
        " JOIN media_pipeline.audio_files a ON a.id = t.audio_file_id WHERE a.id = $1",
        uuid.UUID(job.id),
    )
    _clean("row text", row["text"])
    _clean("row metadata", row["metadata"], CARD_SAID)
    payload = await pool.fetchval(
        "SELECT payload FROM media_pipeline.outbox WHERE subject LIKE 'transcribe.transcript.ready.%'"
        " AND convert_from(payload, 'UTF8')::jsonb->>'audio_file_id' = $1",
        job.id,
    )
    _clean("event", bytes(payload).decode(), CARD_SAID)
    announced = await queue.job_for_event(pool, uuid.UUID(job.id))
    assert announced is not None
    webhook = completed_body(
        msgspec.json.decode(bytes(payload), type=TranscriptReady),
        announced,
        row["text"],
        transcript_url="http://x",
    )
    _clean("webhook", webhook.decode(), CARD_SAID)
    record = msgspec.convert(row["redaction"], RedactionRecord)
    assert record.counts == {"credit_card": 1}
    return record


async def _check_beep(store: Any, record: RedactionRecord, audio_key: str) -> None:
    (span,) = record.spans
    assert span.cls == "credit_card" and record.timing == "words"
    assert span.start is not None and span.end is not None
    assert span.start <= FIRST_DIGIT and span.end >= LAST_DIGIT
    audio = record.audio
    assert audio is not None and audio.status == "redacted"
    # The copy's key follows from the job's audio key (the record names no key).
    beeped = await store.get_bytes(redacted_audio_key(audio_key))
    harness.assert_beeped(beeped, FIRST_DIGIT, LAST_DIGIT)


async def test_a_card_read_across_the_other_partys_words_is_redacted_everywhere(
    settings: Settings, pool: asyncpg.Pool, fake: ChannelFake
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await _job(pool, store)
        await worker.handle(harness.delivery(job.event))
        state = await harness.job_state(pool, job.id)
        assert state["status"] == "completed"
        record = await _check_views(pool, store, job)
        await _check_beep(store, record, job.key)
    assert [r.status for r in fake.requests] == [200, 200]


async def test_a_resumed_call_saved_no_digit_of_the_card_in_its_chunks(
    settings: Settings, pool: asyncpg.Pool, fake: ChannelFake
) -> None:
    async with harness.transcriber(settings, pool, fake) as (worker, store):
        job = await _job(pool, store)
        fake.fail_once.add("ch0")  # the agent's channel fails: the customer's is saved
        with pytest.raises(Retry):
            await worker.handle(harness.delivery(job.event))
        saved = await pool.fetch(
            "SELECT transcript FROM media_pipeline.transcription_chunks WHERE audio_file_id = $1",
            uuid.UUID(job.id),
        )
        assert len(saved) == 1
        chunk = saved[0]["transcript"]
        _clean_json(chunk)
        _clean("saved chunk", json.dumps(chunk), CARD_SAID)
        assert "[CREDIT_CARD]" in chunk["text"]
        await worker.handle(harness.delivery(job.event, attempt=2))
        assert (await harness.job_state(pool, job.id))["status"] == "completed"
        record = await _check_views(pool, store, job)
        # The customer's words came from the saved chunk: the placeholder keeps the card's span.
        await _check_beep(store, record, job.key)
    assert [r.status for r in fake.requests].count(200) == 2
