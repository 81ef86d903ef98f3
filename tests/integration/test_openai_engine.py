"""OpenAIEngine against a real HTTP server speaking OpenAI's transcription API.

Every call must reach the server exactly once: retries are the JetStream consumer's job, so
each failure test also asserts that the SDK did not quietly try again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import time
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import openai
import pytest

from services.transcriber.engines.base import (
    EngineAuthError,
    EngineOptions,
    PermanentEngineError,
    TransientEngineError,
)
from services.transcriber.engines.languages import normalize_language
from services.transcriber.engines.openai.engine import OpenAIEngine, build_client
from services.transcriber.engines.openai.errors import parse_retry_after
from tests.fakes.openai_server import FakeOpenAIServer, Fault, RecordedRequest

pytestmark = pytest.mark.integration

HELLO_WAV = Path(__file__).parent.parent / "fixtures" / "hello_campaign.wav"
TEXT = "hello and welcome to the spring campaign call please call me back tomorrow"


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "silence.wav")


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(fixed_text=TEXT) as fake:
        yield fake


@pytest.fixture
async def engine(server: FakeOpenAIServer) -> AsyncIterator[OpenAIEngine]:
    engine = OpenAIEngine.from_settings(server.api_key, server.base_url, timeout=5.0)
    yield engine
    await engine.aclose()


def size_and_sha256(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def only_request(server: FakeOpenAIServer) -> RecordedRequest:
    assert len(server.requests) == 1, "the SDK must not retry on its own"
    return server.requests[0]


# -- successful transcriptions -------------------------------------------------------------


async def test_whisper_segment_timestamps(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    transcript = await engine.transcribe(wav, EngineOptions(timestamps="segment"))

    assert transcript.text == TEXT
    assert transcript.engine == "openai"
    assert transcript.model == "whisper-1"
    # Whisper says "english"; the pipeline speaks ISO codes.
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(1.0)
    assert transcript.words is None
    assert [s.id for s in transcript.segments] == [0, 1]
    assert " ".join(s.text for s in transcript.segments) == TEXT
    assert transcript.segments[0].start == 0.0
    assert transcript.segments[-1].end == pytest.approx(1.0)

    meta = transcript.engine_metadata
    assert meta.raw_response["task"] == "transcribe"
    assert meta.raw_response["segments"][0]["text"].startswith(" ")
    assert meta.latency_ms > 0
    assert meta.response_format == "verbose_json"

    sent = only_request(server)
    assert meta.request_id == sent.request_id
    assert sent.model == "whisper-1"
    assert sent.response_format == "verbose_json"
    assert sent.timestamp_granularities == ["segment"]
    assert sent.language is None
    assert sent.filename == "silence.wav"
    assert sent.file_content_type in {"audio/x-wav", "audio/wav"}
    assert (sent.file_size, sent.file_sha256) == size_and_sha256(wav)
    assert sent.authorization == f"Bearer {server.api_key}"


async def test_whisper_word_timestamps(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    transcript = await engine.transcribe(wav, EngineOptions(timestamps="word", language="en"))

    assert transcript.words is not None
    assert [w.word for w in transcript.words] == TEXT.split()
    assert transcript.words[0].start == 0.0
    assert transcript.words[-1].end == pytest.approx(1.0)
    assert all(w.start <= w.end for w in transcript.words)
    assert transcript.segments, "segments are requested alongside words"

    sent = only_request(server)
    assert sent.timestamp_granularities == ["segment", "word"]
    assert sent.language == "en"


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
async def test_a_prompt_is_sent_to_models_that_take_one(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path, model: str
) -> None:
    prompt = "Acme Telecom, SuperSaver 5G"
    transcript = await engine.transcribe(wav, EngineOptions(model=model, prompt=prompt))
    assert only_request(server).prompt == prompt
    assert transcript.engine_metadata.prompt == "sent"


async def test_no_prompt_no_prompt_field(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    transcript = await engine.transcribe(wav, EngineOptions())
    assert only_request(server).prompt is None
    assert transcript.engine_metadata.prompt is None


def test_the_diarizing_model_takes_no_prompt() -> None:
    # OpenAI refuses a prompt for gpt-4o-transcribe-diarize (the fake does too): not sent.
    from services.transcriber.engines.openai.models import takes_prompt

    assert not takes_prompt("gpt-4o-transcribe-diarize")
    assert takes_prompt("whisper-1") and takes_prompt("gpt-4o-transcribe")


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
async def test_gpt4o_json_gets_one_segment_spanning_the_audio(
    engine: OpenAIEngine, server: FakeOpenAIServer, tmp_path: Path, model: str
) -> None:
    audio = write_wav(tmp_path / "call.wav", seconds=2.5)

    transcript = await engine.transcribe(
        audio, EngineOptions(model=model, language="de", timestamps="word")
    )

    assert transcript.text == TEXT
    assert transcript.model == model
    assert transcript.language == "de"
    assert transcript.duration == pytest.approx(2.5, abs=0.05)
    assert len(transcript.segments) == 1
    assert transcript.segments[0].start == 0.0
    assert transcript.segments[0].end == pytest.approx(transcript.duration)
    assert transcript.segments[0].text == TEXT
    # These models return no timings, so there is nothing to put in words.
    assert transcript.words is None
    assert transcript.engine_metadata.raw_response["usage"]["type"] == "tokens"
    assert transcript.engine_metadata.response_format == "json"

    sent = only_request(server)
    assert sent.model == model
    assert sent.response_format == "json"
    assert sent.timestamp_granularities == []
    assert sent.language == "de"


@pytest.mark.skipif(not HELLO_WAV.exists(), reason="speech fixture not generated")
async def test_gpt4o_duration_comes_from_probing_the_file(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    # A real recording, and a server that reports no duration: the engine must probe it.
    transcript = await engine.transcribe(HELLO_WAV, EngineOptions(model="gpt-4o-mini-transcribe"))

    assert transcript.duration == pytest.approx(102_884 / 16_000, abs=0.05)
    assert transcript.segments[0].end == transcript.duration
    assert only_request(server).filename == "hello_campaign.wav"


async def test_gpt4o_keeps_the_text_when_the_local_probe_fails(
    engine: OpenAIEngine, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # The provider decoded it but FFmpeg here cannot: the paid-for text must not be lost.
    audio = tmp_path / "odd.mp3"
    audio.write_bytes(b"\x00not really audio" * 64)

    transcript = await engine.transcribe(audio, EngineOptions(model="gpt-4o-transcribe"))

    assert transcript.text == TEXT
    assert transcript.duration == 0.0
    assert transcript.engine_metadata.duration_unknown is True


async def test_default_model_is_configurable(server: FakeOpenAIServer, wav: Path) -> None:
    engine = OpenAIEngine(
        build_client(server.api_key, server.base_url, 5.0), default_model="gpt-4o-transcribe"
    )
    try:
        transcript = await engine.transcribe(wav, EngineOptions())
    finally:
        await engine.aclose()
    assert transcript.model == "gpt-4o-transcribe"
    assert transcript.language is None
    assert only_request(server).response_format == "json"


async def test_upload_bytes_arrive_intact_for_a_larger_file(
    engine: OpenAIEngine, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # Several MiB so the multipart body is streamed in many chunks.
    audio = write_wav(tmp_path / "long.wav", seconds=120)

    transcript = await engine.transcribe(audio, EngineOptions())

    sent = only_request(server)
    assert (sent.file_size, sent.file_sha256) == size_and_sha256(audio)
    assert transcript.duration == pytest.approx(120.0)


async def test_concurrent_calls_are_not_serialised(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.latency = 0.3
    started = time.monotonic()

    await asyncio.gather(*(engine.transcribe(wav, EngineOptions()) for _ in range(6)))

    assert server.max_in_flight == 6
    assert len(server.requests) == 6
    assert time.monotonic() - started < 6 * 0.3


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (Fault.rate_limited(retry_after=7), 7.0),
        (Fault.rate_limited(retry_after=None, retry_after_ms=1500), 1.5),
        # OpenAI sends both; the millisecond one is more precise.
        (Fault.rate_limited(retry_after=2, retry_after_ms=1250), 1.25),
        (Fault.rate_limited(retry_after=None), None),
    ],
)
async def test_429_is_transient_with_retry_after(
    engine: OpenAIEngine,
    server: FakeOpenAIServer,
    wav: Path,
    fault: Fault,
    retry_after: float | None,
) -> None:
    server.fail_next(fault)

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == retry_after
    assert isinstance(caught.value.__cause__, openai.RateLimitError)
    assert "Rate limit reached" in caught.value.detail
    only_request(server)


async def test_429_reset_header_is_used_when_retry_after_is_missing(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    fault = Fault.rate_limited(retry_after=None)
    server.fail_next(
        Fault(
            status=429,
            body=fault.body,
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"},
        )
    )

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.retry_after == 90.0


async def test_insufficient_quota_has_its_own_code(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.fail_next(Fault.insufficient_quota())

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "insufficient_quota"
    only_request(server)


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (Fault.server_error(500), None),
        (Fault.unavailable(retry_after=3), 3.0),
        (Fault.server_error(502), None),
        (Fault.bad_gateway_html(), None),
    ],
)
async def test_5xx_is_transient(
    engine: OpenAIEngine,
    server: FakeOpenAIServer,
    wav: Path,
    fault: Fault,
    retry_after: float | None,
) -> None:
    server.fail_next(fault)

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "server_error"
    assert caught.value.retry_after == retry_after
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert str(fault.status) in caught.value.detail
    only_request(server)


async def test_html_error_body_ends_up_in_the_detail(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.fail_next(Fault.bad_gateway_html())

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert "502 Bad Gateway" in caught.value.detail


@pytest.mark.parametrize("fault", [Fault.invalid_file(), Fault.undecodable()])
async def test_400_invalid_media_is_permanent(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path, fault: Fault
) -> None:
    server.fail_next(fault)

    with pytest.raises(PermanentEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "invalid_media"
    assert isinstance(caught.value.__cause__, openai.BadRequestError)
    only_request(server)


async def test_unsupported_extension_and_empty_file_are_invalid_media(
    engine: OpenAIEngine, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # The fake applies OpenAI's own checks: container from the extension, minimum length.
    odd = write_wav(tmp_path / "recording.xyz")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")

    for audio in (odd, empty):
        with pytest.raises(PermanentEngineError) as caught:
            await engine.transcribe(audio, EngineOptions())
        assert caught.value.code == "invalid_media", caught.value.detail
    assert len(server.requests) == 2


async def test_unknown_model_is_permanent_model_not_found(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    with pytest.raises(PermanentEngineError) as caught:
        await engine.transcribe(wav, EngineOptions(model="whisper-9"))

    assert caught.value.code == "model_not_found"
    assert isinstance(caught.value.__cause__, openai.NotFoundError)
    only_request(server)


async def test_413_is_permanent_too_large(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.max_upload_bytes = 1000

    with pytest.raises(PermanentEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "too_large"
    only_request(server)


async def test_wrong_api_key_is_an_auth_error(server: FakeOpenAIServer, wav: Path) -> None:
    engine = OpenAIEngine.from_settings("sk-wrong-key-1234", server.base_url, timeout=5.0)
    try:
        with pytest.raises(EngineAuthError) as caught:
            await engine.transcribe(wav, EngineOptions())
    finally:
        await engine.aclose()

    assert caught.value.code == "engine_auth"
    assert isinstance(caught.value.__cause__, openai.AuthenticationError)
    assert "Incorrect API key" in caught.value.detail
    only_request(server)


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.unauthorized(), "engine_auth"), (Fault.forbidden(), "engine_forbidden")],
)
async def test_401_403_are_auth_errors(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path, fault: Fault, code: str
) -> None:
    server.fail_next(fault)

    with pytest.raises(EngineAuthError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == code
    only_request(server)


async def test_hang_past_the_client_timeout_is_transient(
    server: FakeOpenAIServer, wav: Path
) -> None:
    engine = OpenAIEngine.from_settings(server.api_key, server.base_url, timeout=0.5)
    server.fail_next(Fault.hang(30))
    started = time.monotonic()
    try:
        with pytest.raises(TransientEngineError) as caught:
            await engine.transcribe(wav, EngineOptions())
    finally:
        await engine.aclose()

    assert caught.value.code == "timeout"
    assert isinstance(caught.value.__cause__, openai.APITimeoutError)
    assert time.monotonic() - started < 5
    only_request(server)


async def test_dropped_connection_is_transient(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.fail_next(Fault.drop_connection())

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "connection_error"
    # The SDK's aiohttp transport calls every connection error a timeout; the code and the
    # detail come from the error underneath.
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    assert "ServerDisconnectedError" in caught.value.detail
    only_request(server)


async def test_connection_refused_is_transient(wav: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    engine = OpenAIEngine.from_settings("sk-x", f"http://127.0.0.1:{port}/v1", timeout=2.0)
    try:
        with pytest.raises(TransientEngineError) as caught:
            await engine.transcribe(wav, EngineOptions())
    finally:
        await engine.aclose()

    assert caught.value.code == "connection_error"
    assert str(port) in caught.value.detail


async def test_unreadable_200_is_transient(
    engine: OpenAIEngine, server: FakeOpenAIServer, wav: Path
) -> None:
    server.fail_next(Fault(status=200, body={"unexpected": "shape"}))

    with pytest.raises(TransientEngineError) as caught:
        await engine.transcribe(wav, EngineOptions())

    assert caught.value.code == "invalid_response"


async def test_engine_refuses_a_retrying_client() -> None:
    client = openai.AsyncOpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1")
    try:
        with pytest.raises(ValueError, match="max_retries=0"):
            OpenAIEngine(client)
    finally:
        await client.close()


async def test_a_default_sdk_client_would_have_retried(server: FakeOpenAIServer, wav: Path) -> None:
    """Proves the one-request assertions above can fail: the SDK's own default retries."""
    client = openai.AsyncOpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=2)
    server.fail_next(Fault.server_error(retry_after=0.01), Fault.server_error(retry_after=0.01))
    try:
        with wav.open("rb") as fh:
            result = await client.audio.transcriptions.create(file=fh, model="whisper-1")
    finally:
        await client.close()
    assert result.text == TEXT
    assert [r.status for r in server.requests] == [500, 500, 200]


# -- pure helpers --------------------------------------------------------------------------


def test_parse_retry_after_variants() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "inf"}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({}) is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after({"retry-after": future}) or 0) <= 30


def test_normalize_language() -> None:
    assert normalize_language("english") == "en"
    assert normalize_language("English") == "en"
    assert normalize_language("haitian creole") == "ht"
    assert normalize_language("de") == "de"
    assert normalize_language("") is None
    assert normalize_language(None) is None


# -- the fake itself -----------------------------------------------------------------------


async def test_fake_rejects_non_multipart_like_openai(server: FakeOpenAIServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/audio/transcriptions",
            json={"model": "whisper-1"},
            headers={"Authorization": f"Bearer {server.api_key}"},
        ) as response,
    ):
        body = await response.json()
    assert response.status == 400
    assert "multipart/form-data" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


async def test_fake_text_sources_and_text_format(server: FakeOpenAIServer, wav: Path) -> None:
    client = openai.AsyncOpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
    server.queue_texts("first chunk", "second chunk")
    try:
        texts = []
        for _ in range(2):
            with wav.open("rb") as fh:
                result = await client.audio.transcriptions.create(file=fh, model="whisper-1")
            texts.append(result.text)
        server.transcript_fn = lambda request, audio: f"{request.filename}:{len(audio)}"
        with wav.open("rb") as fh:
            plain = await client.audio.transcriptions.create(
                file=fh, model="whisper-1", response_format="text"
            )
    finally:
        await client.close()
    assert texts == ["first chunk", "second chunk"]
    assert plain.strip() == f"silence.wav:{size_and_sha256(wav)[0]}"


async def test_fake_runs_as_a_script() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai_server",
        "--port",
        "0",
        "--latency",
        "0.01",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        base_url = json.loads(line)["listening"]
        async with aiohttp.ClientSession() as http:
            stats_url = base_url.removesuffix("/v1") + "/_fake/stats"
            async with http.get(stats_url) as response:
                assert (await response.json())["requests"] == 0
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)
    assert process.returncode == 0
