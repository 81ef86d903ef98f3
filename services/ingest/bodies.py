"""The JSON bodies of the ingest API as msgspec Structs: handlers build their answers from them
(`answer(...)`), and `/openapi.json` takes their JSON Schema from them, so the document and the
wire cannot drift apart. Field names and order are the wire format; do not rename.

Every handler answers through `answer` (the one JSON encoder of the API). Views defined by the
module that owns their table (a delivery and its attempts, a key's endpoint, a dead letter) are
published here under their own names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

# DeadLetter, Attempt, Delivery, Endpoint: views defined by the module that owns their table,
# published as bodies of this API.
from libs.deadletters.records import DeadLetter as DeadLetter
from libs.formats import DateTime, Uri, Uuid, described
from libs.redaction.policy import AudioMode as RedactAudio
from libs.redaction.policy import Keep as RedactKeep
from libs.redaction.policy import Substitution as RedactSubstitution
from libs.transcript import Conversation
from libs.webhooks.admin import Attempt as Attempt
from libs.webhooks.admin import Delivery as Delivery
from libs.webhooks.admin import DeliveryStatus as DeliveryStatus
from libs.webhooks.admin import Endpoint as Endpoint
from services.ingest.submission import (
    DEFAULT_MULTICHANNEL,
    DEFAULT_TIMESTAMPS,
    IDEMPOTENCY_KEY_MAX,
    MAX_PROMPT_CHARS,
    Model,
    Multichannel,
    Timestamps,
)

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType

# The public job status of /status; `metadata.state` has the internal one (JOB_STATES).
PublicStatus = Literal["pending", "completed", "failed", "deleted"]
JobState = Literal["queued", "processing", "completed", "failed", "deleted"]
# What `GET /api/media/jobs?status=` takes: a public status or a state (pending = queued or
# processing).
ListStatus = Literal["pending", "queued", "processing", "completed", "failed", "deleted"]


def answer(
    body: msgspec.Struct, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response from a body Struct (unset optional fields are left out)."""
    return web.json_response(msgspec.to_builtins(body), status=status, headers=headers)


class ErrorBody(msgspec.Struct):
    """Every error: a stable machine-readable code and a sentence for humans."""

    error: Annotated[str, msgspec.Meta(description="stable code, e.g. invalid_model")]
    detail: str


# --- jobs -----------------------------------------------------------------------------------


class SubmitFields(msgspec.Struct):
    """The form fields of POST /api/media/transcribe (urlencoded or multipart; multipart adds
    the `file` part). Exactly one of recording_id, url, file."""

    recording_id: Annotated[
        str | Unset,
        described(
            "id in public.recordings (text; exact match first, then a location match with "
            "LIKE wildcards escaped)"
        ),
    ] = UNSET
    url: Annotated[
        str | Unset,
        msgspec.Meta(
            description="http(s) URL of the recording", extra_json_schema={"format": "uri"}
        ),
    ] = UNSET
    b2_prefix: Annotated[
        str | Unset,
        described(
            "tenant namespace for the object key (letters, digits, '.', '_', '-', '/' between "
            "segments; no '..', no leading '/'); default GATEWAY_B2_PREFIX or the key's"
        ),
    ] = UNSET
    phone: Annotated[str | Unset, described("fallback when the database has none")] = UNSET
    campaign: Annotated[str | Unset, described("fallback campaign name")] = UNSET
    campaign_id: Annotated[str | Unset, described("fallback campaign id (name from the DB)")] = (
        UNSET
    )
    company: str | Unset = UNSET
    callback_url: Annotated[
        str | Unset,
        msgspec.Meta(
            description="webhook for this job, signed with the key's whsec_ secret like every "
            "webhook",
            extra_json_schema={"format": "uri"},
        ),
    ] = UNSET
    model: Model | Unset = UNSET
    language: Annotated[str | Unset, described("ISO-639 code, e.g. en")] = UNSET
    timestamps: Timestamps = DEFAULT_TIMESTAMPS
    prompt: (
        Annotated[
            str,
            msgspec.Meta(
                description="vocabulary or context for the model: names, products, spellings"
                " (one line). Sent to the offline engine and to OpenAI models that take a prompt",
                max_length=MAX_PROMPT_CHARS,
            ),
        ]
        | Unset
    ) = UNSET
    multichannel: Annotated[
        Multichannel,
        described(
            "a recording with several channels (a call with agent and customer on the two "
            "sides of a stereo file): 'auto' transcribes each channel on its own when they "
            "carry different voices (not a mono copied to both), 'true' always, 'false' "
            "downmixes to one voice; see utterances and conversation in the transcript"
        ),
    ] = DEFAULT_MULTICHANNEL
    channel_roles: (
        Annotated[
            str,
            msgspec.Meta(
                description="role of channel 0, 1, ... comma-separated (up to 8; each a lower-case"
                " word), e.g. customer,agent; default the key's map, else agent,customer",
                pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,31}( *, *[a-zA-Z][a-zA-Z0-9_-]{0,31}){0,7}$",
            ),
        ]
        | Unset
    ) = UNSET
    audio_ttl: Annotated[
        str | Unset,
        described(
            "remove the audio object this long after submission, once the job is finished "
            "(7d, 36h, 90m or seconds); only shorter than the key's audio TTL"
        ),
    ] = UNSET
    transcript_ttl: Annotated[
        str | Unset,
        described(
            "delete the whole job (transcripts, audio, personal data) this long after "
            "submission (7d, 36h, 90m or seconds); only shorter than the key's transcript TTL"
        ),
    ] = UNSET
    redact: Annotated[
        str | Unset,
        described(
            "PCI/PII redaction (docs/redaction.md): comma-separated classes credit_card, cvv, "
            "expiry, ssn, email, phone, dob, or the groups pci (credit_card, cvv, expiry) and "
            "pii (all); or none. Default: the key's policy, which is also a floor (a job adds "
            "classes, never drops one: 403 redaction_required). Unknown names: 400 "
            "invalid_redact"
        ),
    ] = UNSET
    redact_substitution: Annotated[
        RedactSubstitution | Unset,
        described(
            "entity: [CREDIT_CARD]; mask: digits as '#' (cards grouped by four); last4: cards "
            "keep their last four digits. Default: the key's, else entity"
        ),
    ] = UNSET
    redact_keep: Annotated[
        RedactKeep | Unset,
        described(
            "redacted: the unredacted transcript is never stored or published; both: the "
            "original is also stored, as JSON, under .../transcriptions/unredacted/ (refused "
            "when the key keeps redacted only). Default: the key's, else redacted"
        ),
    ] = UNSET
    redact_audio: Annotated[
        RedactAudio | Unset,
        described(
            "beep or silence: a redacted copy of the audio, each redacted span (word "
            "timestamps, padded 0.15 s) replaced, stored beside the original as "
            "<uuid>.redacted.wav (16 kHz mono); with redact_keep=redacted it then replaces the "
            "original. Default: the key's, else none"
        ),
    ] = UNSET


class Accepted(msgspec.Struct):
    """A submission was accepted (or is the existing job for the same URL / Idempotency-Key)."""

    audio_file_id: Uuid
    status: Literal["QUEUED"]
    b2_key: Annotated[
        str, msgspec.Meta(description="[<b2_prefix>/]<campaign>/audio/<phone>/<uuid>.<ext>")
    ]
    b2_url: Uri
    callback_url_ignored: Annotated[
        bool | Unset,
        msgspec.Meta(
            description="true when this is an existing job (see the Idempotent-Replayed header) "
            "and the request's callback_url differs from the job's: the job keeps its own"
        ),
    ] = UNSET
    detail: Annotated[str | Unset, msgspec.Meta(description="why a field was ignored")] = UNSET


class Requeued(msgspec.Struct):
    """The job is queued again for a new transcription."""

    audio_file_id: Uuid
    status: Literal["QUEUED"]


class JobError(msgspec.Struct):
    code: str | None
    detail: str | None
    permanent: bool | Unset = UNSET


class Progress(msgspec.Struct):
    """Where the job is. Stages: queued, transcribing (long recordings: chunk of chunks, and
    `fraction` = chunk / chunks), rendering, completed, failed."""

    stage: str
    fraction: Annotated[float | None, described("0..1 when known")]
    updated_at: DateTime
    chunk: Annotated[int | Unset, described("chunks of the recording transcribed so far")] = UNSET
    chunks: Annotated[int | Unset, described("chunks the recording was split into")] = UNSET
    channel: int | Unset = UNSET


class Redaction(msgspec.Struct):
    """What was redacted from a completed job's transcripts: counts per class, never values."""

    policy: Annotated[
        str,
        described(
            "canonical policy, e.g. credit_card,cvv,expiry;substitution=entity;keep=redacted"
        ),
    ]
    counts: dict[str, int]
    total: int
    audio: Annotated[
        Literal["redacted", "nothing_to_redact", "not_redacted"] | Unset,
        described("with redact_audio: what happened to the audio (not_redacted: see audio_detail)"),
    ] = UNSET
    audio_key: Annotated[str | Unset, described("the redacted copy of the audio")] = UNSET
    audio_detail: Annotated[str | Unset, described("why the audio could not be redacted")] = UNSET


class StatusMetadata(msgspec.Struct):
    """Always the job's facts; the transcript keys when completed; `error` when failed;
    `last_error` while a pending job is retrying after a transient failure."""

    audio_file_id: Uuid
    state: JobState
    recording_id: str | None
    phone: str | None
    campaign: str | None
    company: str | None
    b2_prefix: str | None
    b2_key: str | None
    attempts: int
    created_at: DateTime
    updated_at: DateTime
    model: str | Unset | None = UNSET
    engine: str | Unset | None = UNSET
    language: str | Unset | None = UNSET
    duration: float | Unset | None = UNSET
    word_count: int | Unset | None = UNSET
    b2_transcript_json_key: str | Unset | None = UNSET
    b2_transcript_txt_key: str | Unset | None = UNSET
    b2_transcript_srt_key: str | Unset | None = UNSET
    b2_transcript_vtt_key: str | Unset | None = UNSET
    completed_at: DateTime | Unset | None = UNSET
    conversation: Annotated[
        Conversation | Unset,
        described(
            "a completed conversation (multichannel call or diarized recording): how the "
            "speakers were found (method: channels | diarization), each speaker with role, "
            "talk time and ratio, words per minute, longest monologue and interruptions, and the "
            "call's silence, overlap and interruptions; see docs/conversations.md, Conversation "
            "metrics"
        ),
    ] = UNSET
    error: JobError | Unset = UNSET
    last_error: JobError | Unset = UNSET
    deleted_at: DateTime | Unset | None = UNSET
    audio_expires_at: Annotated[
        DateTime | Unset, described("retention: when the audio object is removed")
    ] = UNSET
    transcript_expires_at: Annotated[
        DateTime | Unset, described("retention: when the whole job is deleted")
    ] = UNSET
    progress: Progress | Unset = UNSET
    audio_removed_at: Annotated[
        DateTime | Unset, described("retention removed the audio object then")
    ] = UNSET
    deleted_by: Annotated[
        str | Unset | None,
        described("who deleted the job: `key:<api key id>` (DELETE) or `retention`"),
    ] = UNSET
    redaction: Redaction | Unset | None = UNSET
    speaker_names: Annotated[
        dict[str, str] | Unset,
        described(
            "names given to speakers (PUT /api/media/{audio_file_id}/speakers): speaker label "
            "or role -> name; applied to the txt, srt and vtt downloads"
        ),
    ] = UNSET


class Status(msgspec.Struct):
    """The reference status shape."""

    status: PublicStatus
    transcript: str | None
    metadata: StatusMetadata


class Deleted(msgspec.Struct):
    """The job is deleted: a tombstone keeps its id and timestamps; its personal content is gone
    from Postgres, and its objects from the bucket (`objects_removed`; false while object
    storage is unreachable: the deletion is recorded and finishes on its own)."""

    audio_file_id: Uuid
    status: Literal["deleted"]
    deleted_at: DateTime
    deleted_by: Annotated[str, described("`key:<api key id>` (DELETE) or `retention`")]
    objects_removed: bool


class JobList(msgspec.Struct):
    """A page of the key's jobs, newest first; each item is the status body of that job."""

    jobs: list[Status]
    next_cursor: Annotated[
        str | None,
        described("pass as ?cursor= for the next (older) page; null on the last page"),
    ]


# --- health ---------------------------------------------------------------------------------


class Alive(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    """Each dependency is "ok" or "unavailable: <error class>"."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


# --- dead letters ---------------------------------------------------------------------------


class DeadLetters(msgspec.Struct):
    dead_letters: list[DeadLetter]


class RequeueAction(msgspec.Struct):
    id: int
    action: Annotated[str, described("what was put back, e.g. transcription_requeued")]


# --- webhooks -------------------------------------------------------------------------------


class Deliveries(msgspec.Struct):
    audio_file_id: Uuid
    deliveries: list[Delivery]


class Resending(msgspec.Struct):
    id: int
    status: Literal["pending"]


class Recovered(msgspec.Struct):
    recovered: Annotated[int, described("deliveries queued again")]


IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX}
