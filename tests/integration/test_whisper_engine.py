"""The offline engine (Whisper through faster-whisper, the packaged tiny.en) on real speech.

The synthetic fixture and three clips of real read speech (tests/fixtures/speech, copied from
the development corpus with their licences: BSD-2-Clause package, public-domain LibriVox audio)
at 16 kHz and as telephone audio.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from libs.settings import Settings
from libs.transcript import Transcript
from services.transcriber.engines.base import Engine, EngineOptions, PermanentEngineError
from services.transcriber.engines.whisper import (
    PACKAGED_MODEL_NAME,
    FasterWhisperEngine,
    ModelVerificationError,
    WhisperConfig,
    packaged_model_dir,
)
from services.transcriber.main import build_engines, concurrency

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CORPUS = FIXTURES / "speech"
SENTENCE = "hello this is a test call about your campaign please call me back tomorrow morning"
FIXTURE_SECONDS = 102884 / 16000
# Short real (human) clips of the corpus, each a different source and speaker.
CORPUS_CLIPS = ("ps_librivox_0880.wav", "ps_goforward.wav", "ps_librivox_0890.wav")


@pytest.fixture(scope="module")
async def engine() -> FasterWhisperEngine:
    engine = FasterWhisperEngine()
    # One load (hash check included, ~1.5 s) for the whole module.
    await engine.warm_up()
    return engine


_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


def _words(text: str) -> list[str]:
    """Lower-case words, digits up to twenty said as words (Whisper writes "10" for "ten")."""
    words = re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()
    return [_NUMBER_WORDS[int(w)] if w.isdigit() and int(w) <= 20 else w for w in words]


def _wer(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)


def _assert_sane_timings(transcript: Transcript) -> None:
    assert transcript.segments
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end <= segment.start <= segment.end <= transcript.duration
        assert segment.text == segment.text.strip() != ""
        previous_end = segment.end
    assert transcript.text == " ".join(s.text for s in transcript.segments)


def test_satisfies_engine_protocol() -> None:
    engine: Engine = FasterWhisperEngine()
    assert engine.name == "offline"
    assert engine.default_model == PACKAGED_MODEL_NAME
    # Long recordings come in lossless chunks of at most four minutes, one at a time.
    assert engine.limits is not None
    assert (engine.limits.max_seconds, engine.limits.extensions) == (240.0, None)
    assert (engine.limits.chunk_encoding, engine.limits.parallel_chunks) == ("pcm", 1)


def test_settings_select_and_configure_it() -> None:
    settings = Settings.from_env(
        {
            "TRANSCRIBE_ENGINE": "whisper",  # the old name of the offline engine
            "OFFLINE_BEAM_SIZE": "5",
            "OFFLINE_VAD": "off",
            "OFFLINE_DEVICE": "cpu",
            "OFFLINE_THREADS": "2",
        }
    )
    assert settings.engine == "offline"
    config = WhisperConfig.from_settings(settings)
    assert (config.model, config.device, config.compute_type) == (None, "cpu", "auto")
    assert (config.beam_size, config.vad, config.threads, config.jobs) == (5, False, 2, 1)
    assert Settings.from_env({}).engine == "offline"


@pytest.mark.parametrize("fixture", ["hello_campaign.wav", "hello_campaign.m4a"])
async def test_transcribes_the_fixture(engine: FasterWhisperEngine, fixture: str) -> None:
    # The m4a is 44.1 kHz stereo AAC: libs.audio resamples and downmixes, not faster-whisper.
    transcript = await engine.transcribe(FIXTURES / fixture, EngineOptions())
    assert _wer(SENTENCE, transcript.text) < 0.2, transcript.text
    assert transcript.language == "en"
    assert transcript.engine_metadata.language_probability > 0.5
    assert transcript.model == PACKAGED_MODEL_NAME
    assert transcript.engine == "offline"
    # compute type "auto" is int8 on a CPU.
    assert transcript.engine_metadata.compute_type == "int8"
    assert transcript.duration == pytest.approx(FIXTURE_SECONDS, abs=0.05)
    assert transcript.words is None
    _assert_sane_timings(transcript)


async def test_word_timestamps(engine: FasterWhisperEngine) -> None:
    transcript = await engine.transcribe(
        FIXTURES / "hello_campaign.wav", EngineOptions(timestamps="word")
    )
    assert transcript.words
    assert _wer(SENTENCE, " ".join(w.word for w in transcript.words)) < 0.2
    # Bare words, like the other engines' (the segment text keeps the punctuation).
    assert all(w.word.isalpha() for w in transcript.words), transcript.words
    previous_start = 0.0
    for word in transcript.words:
        assert previous_start <= word.start <= word.end <= transcript.duration
        previous_start = word.start
    # "campaign" is said in the first half of the clip, "morning" at its end.
    times = {_words(w.word)[0]: w.start for w in transcript.words if _words(w.word)}
    assert times["campaign"] < transcript.duration / 2 < times["morning"]
    _assert_sane_timings(transcript)


async def test_no_timestamps(engine: FasterWhisperEngine) -> None:
    transcript = await engine.transcribe(
        FIXTURES / "hello_campaign.wav", EngineOptions(timestamps="none")
    )
    assert transcript.segments == () and transcript.words is None
    assert _wer(SENTENCE, transcript.text) < 0.2


async def test_event_loop_keeps_running_during_a_job(engine: FasterWhisperEngine) -> None:
    ticks = 0
    longest_gap = 0.0

    async def tick() -> None:
        nonlocal ticks, longest_gap
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest_gap = max(longest_gap, now - last)
            last = now
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    finally:
        ticker.cancel()
    assert ticks > 10
    # CTranslate2 releases the GIL; decoding holds it only in short numpy steps.
    assert longest_gap < 0.5, longest_gap


async def test_concurrent_jobs_queue_and_both_finish(engine: FasterWhisperEngine) -> None:
    options = EngineOptions()
    first, second = await asyncio.gather(
        engine.transcribe(FIXTURES / "hello_campaign.wav", options),
        engine.transcribe(FIXTURES / "hello_campaign.wav", options),
    )
    assert first.text == second.text
    assert _wer(SENTENCE, first.text) < 0.2


async def test_cancelled_job_leaves_the_engine_usable(engine: FasterWhisperEngine) -> None:
    job = asyncio.create_task(engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions()))
    await asyncio.sleep(0.05)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    transcript = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    assert _wer(SENTENCE, transcript.text) < 0.2


async def test_silence_gives_an_empty_transcript(
    engine: FasterWhisperEngine, tmp_path: Path
) -> None:
    # Whisper is known to invent "Thank you." on silence; its no-speech check must hold here.
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


async def test_transcriber_builds_it_from_settings() -> None:
    # No key: the offline engine is the default, and model=offline names the same engine.
    settings = Settings.from_env({"OFFLINE_JOBS": "2"})
    async with AsyncExitStack() as stack:
        engines = await build_engines(settings, stack)
    assert isinstance(engines.default, FasterWhisperEngine)
    assert engines.for_model("offline") is engines.default is engines.for_model(None)
    # The consumer takes one job more than the engine decodes at once (its I/O overlaps).
    assert concurrency(settings) == 3
    assert engines.default.limits is not None and engines.default.limits.parallel_chunks == 2


async def test_undecodable_media_is_permanent(engine: FasterWhisperEngine, tmp_path: Path) -> None:
    bogus = tmp_path / "noise.wav"
    bogus.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    with pytest.raises(PermanentEngineError) as caught:
        await engine.transcribe(bogus, EngineOptions())
    assert caught.value.code == "invalid_media"


async def test_non_english_is_refused(engine: FasterWhisperEngine) -> None:
    with pytest.raises(PermanentEngineError) as caught:
        await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions(language="de"))
    assert caught.value.code == "unsupported_language"


async def test_tampered_model_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(packaged_model_dir(), copy)
    # The packaged pins apply to a copy of the packaged files too.
    with (copy / "model.bin").open("r+b") as weights:
        weights.seek(4096)
        byte = weights.read(1)
        weights.seek(4096)
        weights.write(bytes([byte[0] ^ 0xFF]))
    pinned = FasterWhisperEngine(
        WhisperConfig(model=str(copy), model_sha256=_packaged_digest("model.bin"))
    )
    with pytest.raises(ModelVerificationError, match=r"model\.bin has SHA-256 .* refusing"):
        await pinned.warm_up()


async def test_packaged_model_verification_refuses_altered_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A changed package: same place, different tokenizer (or weights) -> refused at load.
    copy = tmp_path / "model"
    shutil.copytree(packaged_model_dir(), copy)
    (copy / "tokenizer.json").write_text("{}")
    monkeypatch.setattr("services.transcriber.engines.whisper.packaged_model_dir", lambda: copy)
    with pytest.raises(ModelVerificationError, match=r"tokenizer\.json"):
        await FasterWhisperEngine().warm_up()


def _packaged_digest(name: str) -> str:
    from services.transcriber.engines.whisper import PACKAGED_MODEL_SHA256

    return PACKAGED_MODEL_SHA256[name]


def _corpus_refs() -> dict[str, str]:
    with (CORPUS / "refs.tsv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["file"]: row["reference"] for row in rows}


@pytest.mark.parametrize("band", ["16k", "tel"])
async def test_real_speech_from_the_corpus(engine: FasterWhisperEngine, band: str) -> None:
    refs = _corpus_refs()
    errors = words = 0
    for clip in CORPUS_CLIPS:
        path = CORPUS / clip if band == "16k" else CORPUS / "tel" / clip
        transcript = await engine.transcribe(path, EngineOptions(timestamps="word"))
        _assert_sane_timings(transcript)
        assert transcript.words
        reference = refs[clip]
        errors += round(_wer(reference, transcript.text) * len(_words(reference)))
        words += len(_words(reference))
    # Measured (bench/results/offline_wer.json, beam 1): 2 errors in these 26 words at 16 kHz,
    # 4 on the telephone copies (pocketsphinx: 8 and 14). The int8 kernels decode differently
    # on different CPUs: another machine of the same kind wrote "old-sposed" for "ill disposed"
    # and "coldhearted" for "cold hearted", 6 errors at 16 kHz. At most 6 (23%) still fails an
    # engine as bad as pocketsphinx was.
    assert errors <= 6, (band, errors, words)


async def test_a_named_model_is_taken_from_the_cache(tmp_path: Path) -> None:
    # OFFLINE_MODEL=tiny.en: a model name, looked up in OFFLINE_MODEL_DIR before any download,
    # and pinned by OFFLINE_MODEL_SHA256 like a directory.
    shutil.copytree(packaged_model_dir(), tmp_path / "tiny.en")
    engine = FasterWhisperEngine(
        WhisperConfig(
            model="tiny.en", model_dir=tmp_path, model_sha256=_packaged_digest("model.bin")
        )
    )
    assert engine.default_model == "whisper-tiny.en"
    transcript = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    assert transcript.model == "whisper-tiny.en"
    assert _wer(SENTENCE, transcript.text) < 0.2


async def test_an_unknown_model_name_is_refused_at_start(tmp_path: Path) -> None:
    engine = FasterWhisperEngine(WhisperConfig(model="tiny-ish", model_dir=tmp_path))
    with pytest.raises(ModelVerificationError, match=r"'tiny-ish' is neither .* large-v3"):
        await engine.warm_up()


def test_a_model_that_cannot_be_fetched_fails_the_start_clearly(tmp_path: Path) -> None:
    # A fresh process, so the model hub's endpoint (read at import) is a closed local port.
    script = (
        "import asyncio\n"
        "from pathlib import Path\n"
        "from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig\n"
        f"engine = FasterWhisperEngine(WhisperConfig(model='base.en', model_dir=Path({str(tmp_path)!r})))\n"
        "asyncio.run(engine.warm_up())\n"
    )
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "ModelVerificationError: could not fetch the Whisper model 'base.en'" in done.stderr
    assert "set OFFLINE_MODEL to its path" in done.stderr
    assert not (tmp_path / "base.en" / "model.bin").exists()


async def test_a_prompt_reaches_the_model(engine: FasterWhisperEngine) -> None:
    plain = await engine.transcribe(FIXTURES / "hello_campaign.wav", EngineOptions())
    prompted = await engine.transcribe(
        FIXTURES / "hello_campaign.wav",
        EngineOptions(prompt="Hello. This is a test call from ACME CORP about your CAMPAIGN."),
    )
    assert prompted.engine_metadata.prompt == "sent" and plain.engine_metadata.prompt is None
    # The prompt is context, never part of the transcript.
    assert "ACME" not in prompted.text
    assert _wer(SENTENCE, prompted.text) < 0.2


def test_a_multilingual_language_name_or_code_is_normalised() -> None:
    from services.transcriber.engines.languages import normalize_language

    assert normalize_language("English") == "en" and normalize_language("de") == "de"
