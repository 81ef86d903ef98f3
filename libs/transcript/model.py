"""The canonical transcript: every engine produces it, every output format renders from it.

Conversations (a call recorded on two channels, or a mono recording diarized by the engine)
add `utterances`, one per turn of one speaker, and `conversation`, the speaker summary and the
metrics of libs.transcript.conversation. Both default to empty, so transcripts stored before
they existed decode unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from libs.contracts import Conversation


class Word(msgspec.Struct, frozen=True):
    start: float
    end: float
    word: str


class Segment(msgspec.Struct, frozen=True):
    id: int
    start: float
    end: float
    text: str


class Utterance(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of one speaker, timed in seconds of the original recording."""

    # A stable label: "Channel 0", "Channel 1" for channels; the engine's label (or a known
    # speaker name) for diarization.
    speaker: str
    start: float
    end: float
    text: str
    # "agent", "customer", ... from the channel -> role map; None when no role is known.
    role: str | None = None
    # The source channel (0-based) when the speakers come from channels.
    channel: int | None = None
    words: tuple[Word, ...] | None = None

    @property
    def label(self) -> str:
        """What renderers print before the text: the role ("Agent") if known, else the speaker."""
        return self.role.capitalize() if self.role else self.speaker


class ChunkInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where one chunk of long audio lies in the recording (seconds) and the request that
    transcribed it (None for an engine without request ids). Fields in alphabetical order, the
    order the JSON transcript has always had (`render_json` sorts dict keys)."""

    cut: float
    end: float
    index: int
    request_id: str | None = None
    start: float


class EngineMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an engine (and the long-audio and channel paths around it) reports about one
    transcription. Unset fields are not written, so the stored JSON holds only what was set;
    unknown keys of older transcripts are ignored on decoding. Fields in alphabetical order:
    the order the JSON transcript had when this was a dict (`render_json` sorts dict keys)."""

    # Offline engine (faster-whisper): decoder settings of the run.
    beam_size: int | None = None
    # Set on each entry of `channels`: the channel (0-based) the entry describes.
    channel: int | None = None
    # A call transcribed channel by channel: each channel's metadata (without its raw response).
    channels: tuple[EngineMetadata, ...] | None = None
    # Long audio: where each chunk lies (empty for a channel with no speech at all).
    chunks: tuple[ChunkInfo, ...] | None = None
    # Long audio: chunks transcribed by an earlier attempt and reused.
    chunks_reused: int | None = None
    compute_type: str | None = None
    # The engine could not measure the audio; the duration is the billed seconds, or 0.
    duration_unknown: bool | None = None
    language_probability: float | None = None
    # OpenAI: the request's round trip, and the server's own time (openai-processing-ms).
    latency_ms: float | None = None
    processing_ms: int | None = None
    # Offline engine: seconds spent transcribing.
    processing_seconds: float | None = None
    # Only when the caller gave a prompt: sent, or ignored by a model that takes none.
    prompt: Literal["sent", "ignored"] | None = None
    # The engine's answer as it came (long audio: {"chunks": [...]}; channels:
    # {"channels": [...]}). Stored in its own column, never in `transcriptions.metadata`.
    raw_response: Any = None
    # UNSET (not written) for engines without request ids; None (written as null) when the
    # engine has them but the answer carried none.
    request_id: str | msgspec.UnsetType | None = msgspec.UNSET
    # Offline engine: the model the caller asked for when another one ran.
    requested_model: str | None = None
    response_format: str | None = None
    # Where the speakers come from: "diarization", "channels", or "none" (asked for and not
    # available; `speakers_detail` says why).
    speakers: Literal["diarization", "channels", "none"] | None = None
    speakers_detail: str | None = None
    # A channel cut into speech turns: the number of turns (0: nothing said).
    turns: int | None = None
    vad: bool | None = None

    # The fields that repeat what was said (raw answers, per-chunk and per-channel entries):
    # redaction drops them and names them (libs.redaction.apply).
    NESTED: ClassVar[tuple[str, ...]] = ("channels", "chunks", "raw_response")

    @property
    def request(self) -> str | None:
        """The request id, None when the engine has none."""
        return None if isinstance(self.request_id, msgspec.UnsetType) else self.request_id


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()
    # Only filled when the caller asked for word timestamps.
    words: tuple[Word, ...] | None = None
    model: str
    engine: str
    engine_metadata: EngineMetadata = msgspec.field(default_factory=EngineMetadata)
    # Who said what, in time order; empty when the speakers are unknown.
    utterances: tuple[Utterance, ...] = ()
    conversation: Conversation | None = None

    @property
    def word_count(self) -> int:
        return len(self.text.split())


def with_asked_timings(transcript: Transcript, timestamps: str) -> Transcript:
    """The transcript as the caller asked for it: word timings (top-level `words` and each
    utterance's `words`) only with `timestamps=word`. The engine may have been asked for words
    anyway (audio redaction needs their spans) or volunteered them; every transcript passes
    here before it is stored, whatever the redaction policy."""
    if timestamps == "word":
        return transcript
    if transcript.words is None and all(u.words is None for u in transcript.utterances):
        return transcript
    utterances = tuple(msgspec.structs.replace(u, words=None) for u in transcript.utterances)
    return msgspec.structs.replace(transcript, words=None, utterances=utterances)
