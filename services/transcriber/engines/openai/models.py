"""What OpenAI's transcription models answer and accept, decided from the model name alone.

Compatible servers serve models under any name, so capabilities follow naming conventions
(gpt-* vs Whisper-style) rather than a closed list of known models.
"""

from __future__ import annotations

from typing import Literal

from services.transcriber.engines.base import OutputShape, Timestamps, UploadLimits

DEFAULT_MODEL = "whisper-1"

ResponseFormat = Literal["json", "verbose_json"]

# OpenAI's documented limits: 25 MB per upload; the gpt-4o models also refuse audio longer
# than 1400 s ("audio duration ... is longer than 1400 seconds"). Extensions it decodes.
LIMITS = UploadLimits(
    max_bytes=25 * 1024 * 1024,
    max_seconds=1400.0,
    extensions=frozenset(
        {"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"}
    ),
)


def response_format_for(model: str) -> ResponseFormat:
    """gpt-* transcription models only answer `json` (text, no timings); Whisper-style models,
    including those served by OpenAI-compatible servers, answer `verbose_json`."""
    return "json" if model.startswith("gpt-") else "verbose_json"


def takes_prompt(model: str) -> bool:
    """Whisper-style and gpt-4o transcription models take a `prompt`; the diarizing model
    refuses one (400)."""
    return "diarize" not in model


def output_shape(model: str, timestamps: Timestamps) -> OutputShape:
    """`verbose_json` carries segments always and words when asked for; `json` only text."""
    response_format = response_format_for(model)
    timed = response_format == "verbose_json"
    return OutputShape(
        response_format=response_format,
        segment_timings=timed,
        word_timings=timed and timestamps == "word",
    )
