"""The offline engine on real speech: festival's rendering of a short call-back request."""

from __future__ import annotations

import asyncio
import difflib
import re
import wave
from pathlib import Path

import pytest

from libs.transcript import Transcript
from services.transcriber.engines.base import Engine, EngineOptions, PermanentEngineError
from services.transcriber.engines.offline import MODEL_NAME, PocketsphinxEngine

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures"
SENTENCE = "Hello, this is a test call about your campaign. Please call me back tomorrow morning."
REFERENCE = re.sub(r"[^a-z ]", "", SENTENCE.lower()).split()
FIXTURE_SECONDS = 102884 / 16000


@pytest.fixture(scope="module")
async def engine() -> PocketsphinxEngine:
    engine = PocketsphinxEngine()
    # Loading the model once keeps the module's tests from paying 0.3-0.5 s each.
    await engine.warm_up()
    return engine


def _recall(text: str) -> float:
    """Fraction of the reference words recognised, in order."""
    matcher = difflib.SequenceMatcher(a=REFERENCE, b=text.split(), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(REFERENCE)


def _assert_sane_segments(transcript: Transcript) -> None:
    assert transcript.segments
    assert [segment.id for segment in transcript.segments] == list(range(len(transcript.segments)))
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end <= segment.start < segment.end <= transcript.duration + 0.01
        assert segment.text == segment.text.strip() != ""
        previous_end = segment.end
    assert transcript.text == " ".join(segment.text for segment in transcript.segments)


def test_satisfies_engine_protocol() -> None:
    engine: Engine = PocketsphinxEngine()
    assert engine.name == "offline"


@pytest.mark.parametrize("fixture", ["hello_campaign.wav", "hello_campaign.m4a"])
async def test_transcribes_the_sentence(engine: PocketsphinxEngine, fixture: str) -> None:
    # The m4a is 44.1 kHz stereo AAC: the same speech through the resample + downmix path.
    transcript = await engine.transcribe(FIXTURES / fixture, EngineOptions())
    assert _recall(transcript.text) >= 0.7, transcript.text
    assert transcript.language == "en"
    assert transcript.engine == "offline"
    assert transcript.model == MODEL_NAME
    assert transcript.duration == pytest.approx(FIXTURE_SECONDS, abs=0.03)
    assert transcript.words is None
    _assert_sane_segments(transcript)
    # Two sentences with a clear pause between them: the endpointer must split there.
    assert len(transcript.segments) >= 2
    assert transcript.engine_metadata["utterances"] >= 2


async def test_word_timestamps(engine: PocketsphinxEngine) -> None:
    transcript = await engine.transcribe(
        FIXTURES / "hello_campaign.wav", EngineOptions(timestamps="word")
    )
    _assert_sane_segments(transcript)
    assert transcript.words is not None
    assert [word.word for word in transcript.words] == transcript.text.split()
    previous_end = 0.0
    for word in transcript.words:
        assert previous_end <= word.start < word.end <= transcript.duration + 0.01
        # Fillers and alternate-pronunciation markers never leak into the output.
        assert re.fullmatch(r"[a-z']+", word.word), word.word
        assert any(s.start <= word.start and word.end <= s.end for s in transcript.segments)
        previous_end = word.end
    # Speech starts ~0.2 s in and "morning" ends before the file does.
    assert 0.1 < transcript.words[0].start < 0.6
    assert transcript.words[-1].end < FIXTURE_SECONDS


async def test_no_timestamps(engine: PocketsphinxEngine) -> None:
    transcript = await engine.transcribe(
        FIXTURES / "hello_campaign.wav", EngineOptions(timestamps="none")
    )
    assert transcript.segments == ()
    assert transcript.words is None
    assert _recall(transcript.text) >= 0.7


async def test_decoder_reuse_is_deterministic(engine: PocketsphinxEngine) -> None:
    # A different recording in between must not change the next result (live CMN is reset).
    first = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    await engine.transcribe(FIXTURES / "hello_campaign.amr", EngineOptions())
    again = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    assert again.text == first.text
    assert again.segments == first.segments


async def test_concurrent_jobs_queue_and_both_finish(engine: PocketsphinxEngine) -> None:
    results = await asyncio.gather(
        engine.transcribe(FIXTURES / "hello_campaign.flac", EngineOptions()),
        engine.transcribe(FIXTURES / "hello_campaign.ogg", EngineOptions()),
    )
    for transcript in results:
        assert _recall(transcript.text) >= 0.7, transcript.text


async def test_event_loop_keeps_running_during_a_job(engine: PocketsphinxEngine) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    finally:
        ticker.cancel()
    # About 1-2 s of decoding: a loop starved by the GIL would tick only a handful of times.
    assert ticks >= 20, ticks


async def test_cancelled_job_leaves_the_engine_usable(engine: PocketsphinxEngine) -> None:
    job = asyncio.create_task(engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions()))
    await asyncio.sleep(0.2)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    # The slot was held until the worker thread stopped, so no second decoder was loaded.
    assert len(engine._idle) == 1
    transcript = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    assert _recall(transcript.text) >= 0.7


async def test_requested_model_is_recorded_not_pretended(engine: PocketsphinxEngine) -> None:
    transcript = await engine.transcribe(
        FIXTURES / "hello_campaign.wav", EngineOptions(model="whisper-1", language="en-US")
    )
    assert transcript.model == MODEL_NAME
    assert transcript.engine_metadata["requested_model"] == "whisper-1"


async def test_undecodable_media_is_permanent(engine: PocketsphinxEngine, tmp_path: Path) -> None:
    junk = tmp_path / "upload.mp3"
    junk.write_bytes(b"<html><body>502 Bad Gateway</body></html>\n" * 10)
    with pytest.raises(PermanentEngineError) as excinfo:
        await engine.transcribe(junk, EngineOptions())
    assert excinfo.value.code == "invalid_media"
    assert "upload.mp3" in excinfo.value.detail
    # The failure did not poison the pooled decoder.
    transcript = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    assert _recall(transcript.text) >= 0.7


async def test_non_english_is_refused(engine: PocketsphinxEngine) -> None:
    with pytest.raises(PermanentEngineError) as excinfo:
        await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions(language="fr"))
    assert excinfo.value.code == "unsupported_language"


async def test_silence_gives_an_empty_transcript(
    engine: PocketsphinxEngine, tmp_path: Path
) -> None:
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(3 * 8000 * 2))
    transcript = await engine.transcribe(path, EngineOptions(timestamps="word"))
    assert transcript.text == ""
    assert transcript.segments == ()
    assert transcript.words == ()
    assert transcript.duration == pytest.approx(3.0, abs=0.01)
