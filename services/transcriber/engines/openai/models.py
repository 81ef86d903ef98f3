"""What OpenAI's transcription models answer and accept, decided from the model name alone.

Compatible servers serve models under any name, so capabilities follow naming conventions
(gpt-* vs Whisper-style) rather than a closed list of known models.
"""

from __future__ import annotations

from typing import Literal

from services.transcriber.engines.base import OutputShape, Timestamps, UploadLimits

DEFAULT_MODEL = "whisper-1"

ResponseFormat = Literal["json", "verbose_json", "diarized_json"]

# OpenAI's documented limits: 25 MB per upload; the gpt-4o models also refuse audio longer
# than 1400 s ("audio duration ... is longer than 1400 seconds"). Extensions it decodes.
LIMITS = UploadLimits(
    max_bytes=25 * 1024 * 1024,
    max_seconds=1400.0,
    extensions=frozenset(
        {"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"}
    ),
)


def diarizes(model: str) -> bool:
    """gpt-4o-transcribe-diarize (and its snapshots): segments with speaker labels."""
    return model.startswith("gpt-") and "diarize" in model


def response_format_for(model: str) -> ResponseFormat:
    """Diarizing models answer `diarized_json` (timed segments with a speaker, no words); other
    gpt-* transcription models only `json` (text, no timings); Whisper-style models, including
    those served by OpenAI-compatible servers, answer `verbose_json`."""
    if diarizes(model):
        return "diarized_json"
    return "json" if model.startswith("gpt-") else "verbose_json"


def takes_prompt(model: str) -> bool:
    """Whisper-style and gpt-4o transcription models take a `prompt`; the diarizing model
    refuses one (400)."""
    return "diarize" not in model


def output_shape(model: str, timestamps: Timestamps) -> OutputShape:
    """`verbose_json` carries segments always and words when asked for; `diarized_json`
    segments (never words); `json` only text."""
    response_format = response_format_for(model)
    return OutputShape(
        response_format=response_format,
        segment_timings=response_format != "json",
        word_timings=response_format == "verbose_json" and timestamps == "word",
    )
