"""Offline English transcription with PocketSphinx, for when audio must not leave the machine.

Audio is decoded to 16 kHz mono PCM by libs.audio and streamed through PocketSphinx's
voice-activity endpointer: every stretch of speech becomes one utterance, decoded on its own and
reported as one segment. Nothing is held for the whole file, so memory stays flat however long
the recording is (measured: RSS flat at ~148 MB through a 10-minute file, 90 MB of it the model);
only the transcript itself grows.

Measured on the development machine (2 vCPU): a Decoder (the en-us model) loads in 0.3-0.5 s and
takes ~90 MB RSS; decoding runs at 0.2-0.3x real time. One Decoder serves any number of jobs in
turn, but never two at once (it is a single C search state). The Cython binding holds the GIL
inside every call, so decoders on threads of one process do not run in parallel (two jobs take
twice as long as one), and the event loop only runs between calls. Hence: the decoder is fed
~0.1 s at a time, utterances are capped (`end_utt` costs ~45 ms per second of utterance, all
under the GIL), and concurrency defaults to 1 per process: scale with processes, not threads.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pocketsphinx
import structlog

from libs.audio import SAMPLE_RATE, SAMPLE_WIDTH, UndecodableAudio, iter_pcm
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

MODEL_NAME = "pocketsphinx-en-us"
LANGUAGE = "en"

# PocketSphinx's default model is US English; any English variant is the best it can do, and
# anything else would come back as confident English nonsense.
_ENGLISH = re.compile(r"^(en|eng|english)([-_][a-z0-9]+)?$", re.IGNORECASE)
# "<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]" and the old "++BREATH++" style fillers.
_NON_WORD = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
# Alternate pronunciations are dictionary entries like "the(2)"; the word is the same.
_ALTERNATE = re.compile(r"\(\d+\)$")

# The decoder holds the GIL for the whole of each process_raw call, so it is fed ~0.1 s at a time
# to let the event loop thread run between calls.
_FEED_BYTES = SAMPLE_RATE * SAMPLE_WIDTH // 10
# The first utterance of a job is decoded after PocketSphinx's cepstral mean has seen this much of
# the recording's own speech: starting from the model's generic prior costs real words ("your
# campaign" came back as "your content" on the fixture), and decoding this much twice is cheap.
_CMN_PRIMING_BYTES = SAMPLE_RATE * SAMPLE_WIDTH

_log = structlog.get_logger()


class PocketsphinxEngine:
    """`Engine` backed by PocketSphinx 5 and the en-us model shipped in its wheel."""

    name = "offline"
    # Decodes any container itself and streams it in constant memory: never split.
    limits: UploadLimits | None = None

    def __init__(self, *, max_concurrency: int = 1, max_utterance_seconds: float = 20.0) -> None:
        """`max_utterance_seconds` bounds both the decoder's per-utterance memory and the
        longest event-loop stall (~0.9 s at the default), at the price of a forced cut in
        speech that runs longer than that without a pause."""
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_utterance_seconds <= 1:
            raise ValueError(f"max_utterance_seconds must be > 1, got {max_utterance_seconds}")
        # Parsing the config is cheap; loading the model it points at (in Decoder) is not, so
        # decoders are built lazily from this one config and reused across jobs.
        self._config = pocketsphinx.Config(loglevel="ERROR")
        self._frame_rate = int(self._config["frate"])
        self._max_utterance_bytes = int(max_utterance_seconds * SAMPLE_RATE) * SAMPLE_WIDTH
        self._max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    async def warm_up(self) -> None:
        """Load one decoder now, so the first job does not pay for it and a broken model fails
        at startup rather than on a customer's file."""
        decoder = await asyncio.to_thread(self._checkout)
        self._checkin(decoder)

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    @property
    def default_model(self) -> str:
        return MODEL_NAME

    def output_shape(self, model: str, timestamps: Timestamps) -> OutputShape:
        # One model whatever was asked for; every utterance is timed, down to the word.
        return OutputShape(
            response_format=None,
            segment_timings=timestamps != "none",
            word_timings=timestamps == "word",
        )

    async def check_credentials(self) -> bool:
        return True

    async def transcribe(self, audio: Path, options: EngineOptions) -> Transcript:
        if options.language is not None and not _ENGLISH.match(options.language):
            raise PermanentEngineError(
                f"the offline engine only transcribes English, not {options.language!r}",
                code="unsupported_language",
            )
        return await run_cancellable(
            self._slots, lambda cancelled: self._transcribe_blocking(audio, options, cancelled)
        )

    def _transcribe_blocking(
        self, audio: Path, options: EngineOptions, cancelled: threading.Event
    ) -> Transcript:
        started = time.perf_counter()
        decoder = self._checkout()
        recogniser = _Recognition(decoder, self._frame_rate, self._max_utterance_bytes)
        # Only the expected failures hand the decoder back: anything else came from PocketSphinx
        # itself, leaving its state unknown, so that decoder is dropped instead of reused.
        try:
            with closing(iter_pcm(audio)) as pcm:
                recogniser.run(pcm, cancelled)
        except UndecodableAudio as exc:
            self._checkin(decoder)
            raise PermanentEngineError(str(exc), code="invalid_media") from exc
        except _Cancelled:
            self._checkin(decoder)
            raise
        self._checkin(decoder)
        elapsed = time.perf_counter() - started
        duration = recogniser.samples / SAMPLE_RATE
        _log.info(
            "offline_transcribed",
            file=audio.name,
            audio_seconds=round(duration, 3),
            processing_seconds=round(elapsed, 3),
            utterances=recogniser.utterances,
        )
        metadata: dict[str, Any] = {
            "utterances": recogniser.utterances,
            "processing_seconds": round(elapsed, 3),
        }
        if options.model not in (None, MODEL_NAME):
            # Jobs may carry a cloud model name when they fall back to this engine; say what
            # actually ran instead of pretending.
            metadata["requested_model"] = options.model
        segments = tuple(recogniser.segments)
        return Transcript(
            text=" ".join(segment.text for segment in segments),
            language=LANGUAGE,
            duration=round(duration, 3),
            segments=segments if options.timestamps != "none" else (),
            words=tuple(recogniser.words) if options.timestamps == "word" else None,
            model=MODEL_NAME,
            engine=self.name,
            engine_metadata=metadata,
        )

    def _checkout(self) -> Any:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        started = time.perf_counter()
        decoder = pocketsphinx.Decoder(self._config)
        _log.info("pocketsphinx_model_loaded", seconds=round(time.perf_counter() - started, 3))
        return decoder

    def _checkin(self, decoder: Any) -> None:
        with self._idle_lock:
            # Each idle decoder is ~90 MB: never keep more than can be used at once.
            if len(self._idle) < self._max_concurrency:
                self._idle.append(decoder)


if TYPE_CHECKING:
    # mypy proves here that the class implements every member of `Engine`.
    _engine: type[Engine] = PocketsphinxEngine


class _Cancelled(Exception):
    pass


class _Recognition:
    """One job's pass over the audio: endpointing, decoding, collecting segments and words."""

    def __init__(self, decoder: Any, frame_rate: int, max_utterance_bytes: int) -> None:
        self._decoder = decoder
        self._frame_rate = frame_rate
        self._max_utterance_bytes = max_utterance_bytes
        self._endpointer = pocketsphinx.Endpointer(sample_rate=SAMPLE_RATE)
        self.samples = 0
        self.utterances = 0
        self.segments: list[Segment] = []
        self.words: list[Word] = []
        self._utterance_start: float | None = None
        self._utterance_bytes = 0
        # Speech held back until the cepstral mean has been primed (first utterance only).
        self._unprimed: bytearray | None = bytearray()
        self._unprimed_start = 0.0

    def run(self, pcm: Iterator[bytes], cancelled: threading.Event) -> None:
        # Live CMN carries over from the previous job on a reused decoder; resetting it to the
        # model's prior makes every job's result independent of what ran before.
        self._decoder.set_cmn(self._decoder.config["cmninit"])
        frame_bytes = self._endpointer.frame_bytes
        pending = bytearray()
        try:
            for chunk in pcm:
                if cancelled.is_set():
                    raise _Cancelled
                self.samples += len(chunk) // SAMPLE_WIDTH
                pending += chunk
                # Hold back at least one byte: end_stream must receive the final (partial)
                # frame, or speech still inside the endpointer's window would be lost.
                usable = (len(pending) - 1) // frame_bytes * frame_bytes
                for offset in range(0, usable, frame_bytes):
                    was_in_speech = self._endpointer.in_speech
                    speech = self._endpointer.process(bytes(pending[offset : offset + frame_bytes]))
                    self._on_speech(speech, was_in_speech)
                del pending[:usable]
            if pending:
                was_in_speech = self._endpointer.in_speech
                self._on_speech(self._endpointer.end_stream(bytes(pending)), was_in_speech)
            self._flush_unprimed()
            self._end_utterance()
        finally:
            if self._utterance_start is not None:
                # Leave the decoder reusable whatever went wrong mid-utterance (bad media,
                # cancellation); if PocketSphinx itself failed, the caller drops the decoder.
                self._utterance_start = None
                with suppress(RuntimeError):
                    self._decoder.end_utt()

    def _on_speech(self, speech: bytes | None, was_in_speech: bool) -> None:
        if speech is None:
            return
        if not was_in_speech:
            start = float(self._endpointer.speech_start)
            if self._unprimed is not None:
                # Only ever the first utterance: it is flushed when it ends, if not before.
                self._unprimed_start = start
            else:
                self._start_utterance(start)
        if self._unprimed is not None:
            self._unprimed += speech
            if len(self._unprimed) >= _CMN_PRIMING_BYTES:
                self._flush_unprimed()
        else:
            self._feed(speech)
        if not self._endpointer.in_speech:
            self._flush_unprimed()
            self._end_utterance()

    def _flush_unprimed(self) -> None:
        """Prime the cepstral mean on the held speech, then decode that speech for real."""
        held, self._unprimed = self._unprimed, None
        if not held:
            return
        decoder = self._decoder
        decoder.start_utt()
        for piece in _pieces(held[:_CMN_PRIMING_BYTES]):
            decoder.process_raw(piece)
        # Ending the utterance is what folds its frames into the live cepstral mean.
        decoder.end_utt()
        self._start_utterance(self._unprimed_start)
        self._feed(bytes(held))

    def _start_utterance(self, start: float) -> None:
        self._decoder.start_utt()
        self._utterance_start = start
        self._utterance_bytes = 0

    def _feed(self, speech: bytes) -> None:
        for piece in _pieces(speech):
            while piece:
                room = self._max_utterance_bytes - self._utterance_bytes
                if room <= 0:
                    # A recording with no pause (music on hold, steady noise) would otherwise
                    # grow one utterance, and the decoder's search memory, without bound.
                    self._split_utterance()
                    continue
                head, piece = piece[:room], piece[room:]
                self._decoder.process_raw(head)
                self._utterance_bytes += len(head)

    def _split_utterance(self) -> None:
        assert self._utterance_start is not None
        restart = self._utterance_start + self._utterance_bytes / (SAMPLE_RATE * SAMPLE_WIDTH)
        self._end_utterance()
        self._start_utterance(restart)

    def _end_utterance(self) -> None:
        start = self._utterance_start
        if start is None:
            return
        self._utterance_start = None
        self._decoder.end_utt()
        self.utterances += 1
        words = [
            Word(
                start=round(start + seg.start_frame / self._frame_rate, 3),
                # end_frame is inclusive.
                end=round(start + (seg.end_frame + 1) / self._frame_rate, 3),
                word=_ALTERNATE.sub("", seg.word),
            )
            for seg in self._decoder.seg()
            if not _NON_WORD.match(seg.word)
        ]
        if not words:
            return
        self.words.extend(words)
        self.segments.append(
            Segment(
                id=len(self.segments),
                start=words[0].start,
                end=words[-1].end,
                text=" ".join(word.word for word in words),
            )
        )


def _pieces(data: bytes | bytearray) -> Iterator[bytes]:
    for offset in range(0, len(data), _FEED_BYTES):
        yield bytes(data[offset : offset + _FEED_BYTES])
