"""A submission as one typed value: the form and headers of `POST /api/media/transcribe`,
validated once, before anything touches the database, storage or the network.

`Submission.parse` checks, in this order (the first failure is the answer): the length of every
stored text (`field_too_long`, naming the field: a value that cannot be stored is refused here,
never by Postgres or S3 later), exactly one source
(`empty_recording_id`, `exactly_one_source`), the `b2_prefix` (`invalid_b2_prefix`,
`prefix_not_allowed`), the options (`invalid_model`, `invalid_language`, `invalid_timestamps`,
`invalid_prompt`, `invalid_multichannel`, `invalid_channel_roles`, `invalid_redact`,
`redaction_required`), the `callback_url` (SSRF policy, `callback_url_*`) and the `Idempotency-Key`
(`invalid_idempotency_key`). The `prompt` is redacted under the job's policy here, so what is
stored, fingerprinted and put on the stream never holds what the policy redacts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from libs import params
from libs.apikeys import ApiKey
from libs.errors import Forbidden, InvalidInput
from libs.layout import InvalidPrefix, validate_prefix
from libs.redaction import Policy, redact_field
from libs.transcript.conversation import parse_roles
from services.ingest.form import SubmitForm, Upload

# The accepted option values: the one list the checks below and /openapi.json both use.
Model = Literal[
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-transcribe-diarize",
    "offline",
]
Timestamps = Literal["none", "segment", "word"]
MODELS: frozenset[str] = frozenset(get_args(Model))
# Whisper reads only the last 224 tokens of a prompt (about 1,000 characters of English);
# twice that leaves room for other models without storing essays.
MAX_PROMPT_CHARS = 2000
TIMESTAMPS: frozenset[str] = frozenset(get_args(Timestamps))
DEFAULT_TIMESTAMPS: Timestamps = "segment"
Multichannel = Literal["auto", "true", "false"]
MULTICHANNEL: frozenset[str] = frozenset(get_args(Multichannel))
DEFAULT_MULTICHANNEL: Multichannel = "auto"
IDEMPOTENCY_KEY_MAX = 200
# The most bytes (UTF-8) of each stored text field. The schema's columns are `text`, so these
# are the gateway's own limits: generous for real values, small enough that no value can make a
# row, an index entry or an object key (b2_prefix, campaign and phone are in the key; see
# submit.check_object_keys for the 1024-byte S3 limit) unstorable.
FIELD_MAX_BYTES: dict[str, int] = {
    "recording_id": 256,
    "url": 4096,
    "callback_url": 2048,
    "phone": 64,
    "campaign": 256,
    "campaign_id": 256,
    "company": 256,
}

SourceKind = Literal["recording_id", "url", "file"]


@dataclass(frozen=True, slots=True)
class RecordingSource:
    """A recording id in the customer's database (`public.recordings` or LOOKUP_SQL_FILE)."""

    kind: ClassVar[SourceKind] = "recording_id"
    recording_id: str


@dataclass(frozen=True, slots=True)
class UrlSource:
    """An http(s) URL to download (it may equal a known recording's location)."""

    kind: ClassVar[SourceKind] = "url"
    url: str


@dataclass(frozen=True, slots=True)
class UploadSource:
    """A multipart upload, already spooled to disk."""

    kind: ClassVar[SourceKind] = "file"
    upload: Upload


Source = RecordingSource | UrlSource | UploadSource


@dataclass(frozen=True, slots=True)
class Options:
    """How to transcribe: None means the transcriber's default."""

    model: str | None
    language: str | None
    timestamps: str
    prompt: str | None = None
    multichannel: str = DEFAULT_MULTICHANNEL
    # The role of channel k; None: the key's map (else the transcriber's default).
    channel_roles: tuple[str, ...] | None = None
    # The effective redaction policy (Policy.spec; '' for none): the key's default and the
    # job's own `redact` fields together (see `parse_redact`).
    redact: str = ""
    # The redact fields as the request sent them, for the fingerprint: a retry of the same
    # request is the same request even if the key's policy changed in between.
    redact_asked: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Fallbacks:
    """Form values used only where the recordings database has nothing (it is the truth)."""

    phone: str | None
    campaign: str | None
    campaign_id: str | None
    company: str | None


@dataclass(frozen=True, slots=True)
class Retention:
    """The job's effective TTLs in seconds (None: kept forever): the key's, or shorter."""

    audio_ttl: int | None
    transcript_ttl: int | None


def parse_retention(form: SubmitForm, key: ApiKey) -> Retention:
    """`audio_ttl` / `transcript_ttl` may shorten the key's retention, never lengthen it."""
    ttls = []
    for name, key_ttl in (
        ("audio_ttl", key.audio_ttl_seconds),
        ("transcript_ttl", key.transcript_ttl_seconds),
    ):
        asked = params.parse_duration(form.get(name), name)
        if asked is not None and key_ttl is not None and asked > key_ttl:
            raise InvalidInput(
                f"{name} may only shorten the key's retention ({key_ttl} s)", code=f"invalid_{name}"
            )
        ttls.append(key_ttl if asked is None else asked)
    return Retention(audio_ttl=ttls[0], transcript_ttl=ttls[1])


@dataclass(frozen=True, slots=True)
class Submission:
    source: Source
    prefix: str
    options: Options
    fallbacks: Fallbacks
    callback_url: str | None
    idempotency_key: str | None
    trace_id: str | None
    # Where the job's transcripts go above `<campaign>/transcriptions/`: '' (the reference
    # layout) for the operator's keys, the job's prefix for a tenant key (libs/layout).
    transcript_prefix: str = ""
    retention: Retention = field(default_factory=lambda: Retention(None, None))

    def fingerprint(self, upload_sha256: str | None = None) -> str:
        """sha256 of what the request asks for, canonically: the source (recording id, URL or
        the upload's content sha256), the prefix, the options and the form's fallbacks. An
        Idempotency-Key reused with another fingerprint is refused. The callback_url is left
        out on purpose: a different one is reported (`callback_url_ignored`), not refused."""
        source = self.source
        match source:
            case RecordingSource(recording_id=rid):
                ident = rid
            case UrlSource(url=url):
                ident = url
            case UploadSource():
                ident = upload_sha256 or ""
        canonical = {
            "v": 1,
            "source": [source.kind, ident],
            "prefix": self.prefix,
            "model": self.options.model,
            "language": self.options.language,
            "timestamps": self.options.timestamps,
            **(
                {"redact": list(self.options.redact_asked)}
                if any(v is not None for v in self.options.redact_asked)
                else {}
            ),
            "phone": self.fallbacks.phone,
            "campaign": self.fallbacks.campaign,
            "campaign_id": self.fallbacks.campaign_id,
            "company": self.fallbacks.company,
        }
        if self.options.prompt is not None:
            # Only when given, so requests fingerprinted before prompts existed still match.
            canonical["prompt"] = self.options.prompt
        # Only when asked for, so requests from before these options keep their fingerprint.
        if self.options.multichannel != DEFAULT_MULTICHANNEL:
            canonical["multichannel"] = self.options.multichannel
        if self.options.channel_roles is not None:
            canonical["channel_roles"] = ",".join(self.options.channel_roles)
        raw = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()

    @classmethod
    def parse(
        cls,
        form: SubmitForm,
        key: ApiKey,
        *,
        idempotency_key: str | None,
        trace_id: str | None,
        validate_callback: Callable[[str], None],
    ) -> Submission:
        check_lengths(form)
        source = parse_source(form)
        prefix = choose_prefix(form.get("b2_prefix"), key)
        options = parse_options(form, key)
        callback_url = form.get("callback_url")
        if callback_url is not None:
            validate_callback(callback_url)
        if idempotency_key is not None and not (1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX):
            raise InvalidInput(
                f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters",
                code="invalid_idempotency_key",
            )
        return cls(
            source=source,
            prefix=prefix,
            options=options,
            fallbacks=Fallbacks(
                phone=form.get("phone"),
                campaign=form.get("campaign"),
                campaign_id=form.get("campaign_id"),
                company=form.get("company"),
            ),
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            trace_id=trace_id,
            transcript_prefix=transcript_prefix(prefix, key),
            retention=parse_retention(form, key),
        )


def check_lengths(form: SubmitForm) -> None:
    """Every stored text within FIELD_MAX_BYTES; the error names the field."""
    for name, limit in FIELD_MAX_BYTES.items():
        value = form.get(name)
        if value is not None and len(value.encode("utf-8")) > limit:
            raise InvalidInput(
                f"{name} is longer than {limit} bytes (UTF-8)", code="field_too_long"
            )


def transcript_prefix(prefix: str, key: ApiKey) -> str:
    """Tenant keys' transcripts live under the job's prefix, so two tenants never share a
    transcript path; the operator's keys (bootstrap, or created --unscoped) keep the reference
    layout `<campaign>/transcriptions/...` that existing readers expect."""
    if key.is_bootstrap or not key.tenant_prefix.strip("/"):
        return ""
    return prefix


def parse_source(form: SubmitForm) -> Source:
    recording_id, url = form.get("recording_id"), form.get("url")
    given = [s for s in (recording_id, url, form.upload) if s is not None]
    if "recording_id" in form.fields and recording_id is None and not given:
        raise InvalidInput("recording_id is empty", code="empty_recording_id")
    if len(given) != 1:
        raise InvalidInput(
            "provide exactly one of recording_id, url or file", code="exactly_one_source"
        )
    if recording_id is not None:
        return RecordingSource(recording_id)
    if url is not None:
        return UrlSource(url)
    assert form.upload is not None
    return UploadSource(form.upload)


def choose_prefix(requested: str | None, key: ApiKey) -> str:
    """The tenant prefix: the requested one, else the key's; a tenant key stays inside its own."""
    try:
        prefix = validate_prefix(requested if requested is not None else key.tenant_prefix)
    except InvalidPrefix as exc:
        raise InvalidInput(str(exc), code="invalid_b2_prefix") from exc
    bound = key.tenant_prefix.strip("/")
    outside = prefix != bound and not prefix.startswith(bound + "/")
    if requested is not None and bound and not key.is_bootstrap and outside:
        raise Forbidden(f"this key may only use b2_prefix {bound!r}", code="prefix_not_allowed")
    return prefix


REDACT_FIELDS = ("redact", "redact_substitution", "redact_keep", "redact_audio")


def parse_redact(form: SubmitForm, key: ApiKey) -> str:
    """The job's redaction policy. The key's default (its tenant's) is a floor: a job may add
    classes and choose its substitution, but never drop a class the key redacts nor keep the
    original (`redact_keep=both`) when the key keeps the redacted transcript only."""
    floor = Policy.from_spec(key.redact)
    names = form.get("redact")
    substitution = form.get("redact_substitution")
    keep = form.get("redact_keep")
    audio = form.get("redact_audio")
    if names is None and substitution is None and keep is None and audio is None:
        return floor.spec
    asked = Policy.parse(
        names if names is not None else ",".join(c.value for c in floor.classes),
        substitution=substitution or floor.substitution,
        keep=keep or floor.keep,
        audio=audio or floor.audio,
    )
    if floor.active and not asked.classes:
        raise Forbidden(
            f"this key redacts {', '.join(sorted(c.value for c in floor.classes))} on every job",
            code="redaction_required",
        )
    if floor.active and floor.keep == "redacted" and asked.keep == "both":
        raise Forbidden(
            "this key keeps redacted transcripts only (redact_keep=both refused)",
            code="redaction_required",
        )
    if floor.audio != "none" and asked.audio == "none":
        raise Forbidden(
            f"this key redacts the audio ({floor.audio}) on every job", code="redaction_required"
        )
    if not asked.classes and (substitution is not None or keep is not None):
        raise InvalidInput(
            "redact_substitution and redact_keep need redact classes", code="invalid_redact"
        )
    merged = Policy(
        classes=asked.classes | floor.classes,
        substitution=asked.substitution,
        keep=asked.keep,
        audio=asked.audio,
    )
    return merged.spec


def parse_options(form: SubmitForm, key: ApiKey) -> Options:
    model = form.get("model")
    if model is not None and model not in MODELS:
        raise InvalidInput(f"model must be one of {sorted(MODELS)}", code="invalid_model")
    language = form.get("language")
    if language is not None and not (
        2 <= len(language) <= 8 and language.replace("-", "").isalpha()
    ):
        raise InvalidInput("language must be an ISO-639 code such as 'en'", code="invalid_language")
    timestamps = form.get("timestamps") or DEFAULT_TIMESTAMPS
    if timestamps not in TIMESTAMPS:
        raise InvalidInput(
            f"timestamps must be one of {sorted(TIMESTAMPS)}", code="invalid_timestamps"
        )
    prompt = form.get("prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"prompt must be at most {MAX_PROMPT_CHARS} characters", code="invalid_prompt"
        )
    multichannel = (form.get("multichannel") or DEFAULT_MULTICHANNEL).lower()
    if multichannel not in MULTICHANNEL:
        raise InvalidInput(
            f"multichannel must be one of {sorted(MULTICHANNEL)}", code="invalid_multichannel"
        )
    redact = parse_redact(form, key)
    return Options(
        model=model,
        language=language,
        timestamps=timestamps,
        # Under the job's policy before it is stored, fingerprinted or put on the stream.
        prompt=redact_field(prompt, Policy.from_spec(redact)),
        multichannel=multichannel,
        channel_roles=parse_channel_roles(form.get("channel_roles")),
        redact=redact,
        redact_asked=tuple(form.get(name) for name in REDACT_FIELDS),
    )


def parse_channel_roles(value: str | None) -> tuple[str, ...] | None:
    """ "customer,agent" -> ("customer", "agent"): the role of channel 0, 1, ..."""
    if value is None:
        return None
    try:
        return parse_roles(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_channel_roles") from exc
