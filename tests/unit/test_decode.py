from __future__ import annotations

import random
import tracemalloc
import wave
from pathlib import Path

import av
import pytest

from libs.audio import (
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    UndecodableAudio,
    iter_pcm,
    probe,
    probe_duration,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
# festival's rendering of the sentence: 102884 samples at 16 kHz.
FIXTURE_SECONDS = 102884 / SAMPLE_RATE
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("hello_campaign.*"))
# Codecs whose decoder (and the resampler, idle at 16 kHz) carry no state that a seek disturbs:
# their windows must be bit-identical to the same span of a full decode.
BIT_EXACT = [
    "hello_campaign.wav",
    "hello_campaign.flac",
    "hello_campaign.mp3",
    "hello_campaign.ogg",
]


def _pcm(path: Path, **kwargs: float | int | None) -> bytes:
    return b"".join(iter_pcm(path, **kwargs))  # type: ignore[arg-type]


def test_every_format_is_covered() -> None:
    assert {Path(name).suffix for name in ALL_FIXTURES} == {
        ".wav", ".mp3", ".m4a", ".opus", ".ogg", ".flac", ".webm", ".amr",
    }  # fmt: skip


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_probe_duration(name: str) -> None:
    # Codec framing (AAC's 1024-sample frames, AMR's 20 ms) pads the end a little.
    assert probe_duration(FIXTURES / name) == pytest.approx(FIXTURE_SECONDS, abs=0.03)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_pcm_sample_count_matches_duration(name: str) -> None:
    pcm = _pcm(FIXTURES / name)
    assert len(pcm) % SAMPLE_WIDTH == 0
    assert len(pcm) / SAMPLE_WIDTH / SAMPLE_RATE == pytest.approx(FIXTURE_SECONDS, abs=0.03)


def test_wav_decodes_to_its_own_samples() -> None:
    # Already 16 kHz mono s16: the decoder must hand back the data chunk untouched.
    data = (FIXTURES / "hello_campaign.wav").read_bytes()
    assert _pcm(FIXTURES / "hello_campaign.wav") == data[44:]


def test_resampled_stereo_aac_keeps_the_signal() -> None:
    info = probe(FIXTURES / "hello_campaign.m4a")
    assert (info.codec, info.sample_rate, info.channels) == ("aac", 44100, 2)
    pcm = _pcm(FIXTURES / "hello_campaign.m4a")
    peak = max(
        abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)
    )
    assert peak > 5000


def test_chunks_are_bounded_and_exact() -> None:
    chunks = list(iter_pcm(FIXTURES / "hello_campaign.opus", chunk_samples=4000))
    assert all(len(chunk) == 4000 * SAMPLE_WIDTH for chunk in chunks[:-1])
    assert 0 < len(chunks[-1]) <= 4000 * SAMPLE_WIDTH
    assert all(isinstance(chunk, bytes) for chunk in chunks)


@pytest.mark.parametrize("name", BIT_EXACT)
def test_windows_are_bit_exact(name: str) -> None:
    full = _pcm(FIXTURES / name)
    for start in (0.5, 2.0, 4.3):
        window = _pcm(FIXTURES / name, start=start, max_samples=8000)
        offset = round(start * SAMPLE_RATE) * SAMPLE_WIDTH
        assert window == full[offset : offset + 8000 * SAMPLE_WIDTH], start


def _samples(pcm: bytes) -> list[int]:
    return [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]


def _best_shift(window: list[int], full: list[int], at: int, search: int = 32) -> int:
    """The offset (in samples) at which `window` best matches `full` around index `at`."""
    probe_len = 800
    errors = {
        shift: sum(abs(a - b) for a, b in zip(window[:probe_len], full[at + shift :], strict=False))
        for shift in range(-search, search + 1)
    }
    return min(errors, key=errors.__getitem__)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_windows_start_on_the_right_sample(name: str) -> None:
    # Codec and resampler state after a seek changes sample values slightly (AAC, Opus, AMR), so
    # this checks alignment: where the window best matches the full decode.
    full = _samples(_pcm(FIXTURES / name))
    # WebM timestamps are whole milliseconds: the first frame's 6.5 ms becomes 7 ms.
    tolerance = 8 if name.endswith(".webm") else 0
    for start in (0.5, 2.0, 4.3):
        window = _samples(_pcm(FIXTURES / name, start=start, max_samples=4000))
        assert abs(_best_shift(window, full, round(start * SAMPLE_RATE))) <= tolerance, start


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_windows_tile_the_file(name: str) -> None:
    full = _pcm(FIXTURES / name)
    step = 2 * SAMPLE_RATE
    tiles = [
        _pcm(FIXTURES / name, start=k * 2.0, max_samples=step) for k in range(4)
    ]  # 0-2, 2-4, 4-6, 6-8 s
    assert [len(t) for t in tiles[:3]] == [step * SAMPLE_WIDTH] * 3
    # Millisecond container timestamps (WebM) may shift the last tile by a few samples.
    assert abs(sum(len(t) for t in tiles) - len(full)) <= 16 * SAMPLE_WIDTH


def test_start_past_the_end_yields_nothing() -> None:
    assert _pcm(FIXTURES / "hello_campaign.flac", start=60.0) == b""


def test_max_samples_zero_yields_nothing() -> None:
    assert _pcm(FIXTURES / "hello_campaign.wav", max_samples=0) == b""


@pytest.mark.parametrize(
    "kwargs",
    [{"chunk_samples": 0}, {"start": -1.0}, {"start": float("inf")}, {"max_samples": -1}],
)
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        next(iter_pcm(FIXTURES / "hello_campaign.wav", **kwargs))  # type: ignore[arg-type]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _corrupt_inputs() -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    wav = (FIXTURES / "hello_campaign.wav").read_bytes()
    return [
        ("empty.wav", b""),
        ("text.mp3", b"Hello, this is plain text and definitely not audio.\n" * 20),
        ("page.html", b"<!DOCTYPE html><html><body><p>not audio</p></body></html>\n" * 20),
        ("junk.bin", bytes(rng.randrange(256) for _ in range(8000))),
        # The moov atom is at the end of this m4a: without it nothing can be decoded.
        ("cut.m4a", (FIXTURES / "hello_campaign.m4a").read_bytes()[:5000]),
        ("header.opus", (FIXTURES / "hello_campaign.opus").read_bytes()[:100]),
        # A valid WAV header announcing no samples at all.
        ("silent.wav", wav[:4] + (36).to_bytes(4, "little") + wav[8:40] + bytes(4)),
    ]


@pytest.mark.parametrize(
    ("name", "data"), _corrupt_inputs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_undecodable_input(tmp_path: Path, name: str, data: bytes) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(UndecodableAudio) as excinfo:
        _pcm(path)
    assert isinstance(excinfo.value, ValueError)
    # The message names the file but not where it lives on this machine.
    assert name in str(excinfo.value)
    assert str(tmp_path) not in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "data"), _corrupt_inputs()[:5], ids=lambda v: v if isinstance(v, str) else ""
)
def test_probe_rejects_undecodable_input(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(UndecodableAudio):
        probe_duration(_write(tmp_path, name, data))


def test_file_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuvj420p"
        frame = av.VideoFrame(16, 16, "yuvj420p")
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    with pytest.raises(UndecodableAudio, match="no audio stream"):
        probe_duration(path)
    with pytest.raises(UndecodableAudio, match="no audio stream"):
        _pcm(path)


def test_damage_mid_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "hello_campaign.mp3").read_bytes())
    rng = random.Random(3)
    middle = len(data) // 2
    data[middle : middle + 600] = bytes(rng.randrange(256) for _ in range(600))
    pcm = _pcm(_write(tmp_path, "damaged.mp3", bytes(data)))
    # Most of the recording survives; only the damaged packets' worth is lost.
    assert len(pcm) / SAMPLE_WIDTH / SAMPLE_RATE > FIXTURE_SECONDS - 1.0


def test_truncated_upload_keeps_what_arrived(tmp_path: Path) -> None:
    data = (FIXTURES / "hello_campaign.opus").read_bytes()
    pcm = _pcm(_write(tmp_path, "cut.opus", data[: len(data) // 2]))
    assert 2.0 < len(pcm) / SAMPLE_WIDTH / SAMPLE_RATE < 4.5


def test_missing_file_is_not_reported_as_bad_media(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_duration(tmp_path / "nope.wav")
    with pytest.raises(FileNotFoundError):
        _pcm(tmp_path / "nope.wav")


def test_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    # Ten minutes of 16 kHz audio is 19 MB of PCM; holding it would dwarf the bound below.
    path = tmp_path / "long.wav"
    second = b"".join(
        (i % 200 - 100).to_bytes(2, "little", signed=True) for i in range(SAMPLE_RATE)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        for _ in range(600):
            out.writeframes(second)
    total = 0
    tracemalloc.start()
    try:
        for chunk in iter_pcm(path):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 600 * SAMPLE_RATE * SAMPLE_WIDTH
    assert peak < 1_000_000
