"""Object keys, exactly as the reference system lays them out (existing readers depend on them).

- audio:       [<prefix>/]<campaign>/audio/<phone>/<uuid>.<ext>
- transcripts: [<transcript prefix>/]<campaign>/transcriptions/<fmt>/<rest>.<fmt>, where <rest>
  is the audio key after "<campaign>/audio/" without its extension: transcripts mirror the audio
  path under the campaign. The transcript prefix is empty (the reference layout, no gateway
  prefix) for the operator's keys; a tenant key's jobs get their own prefix there, so two
  tenants never share a transcript path (chosen at submit, stored as
  `audio_files.transcript_prefix`).

- redaction (issue #14): the original transcript of a `keep=both` job under
  `.../transcriptions/unredacted/<rest>.json`; redacted audio beside the original as
  `<uuid>.redacted.wav`. With `keep=redacted` the redacted audio also replaces the original
  under `<uuid>.wav` (the job's object key moves there; same stem, so the transcript keys stay).
- insights (issue 21): [<transcript prefix>/]<campaign>/insights/<uuid>.json, beside the
  transcripts (the job's categories and the chat model's insights; services/insights).

Every key must fit S3's limit of 1024 bytes (UTF-8); `oversized` tells which would not.
"""

from __future__ import annotations

import re

from libs.contracts import TranscriptKeys

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
UNKNOWN_PHONE = "unknown"
UNKNOWN_CAMPAIGN = "unassigned"
# S3 (and B2, MinIO, SeaweedFS) refuse longer object keys.
MAX_KEY_BYTES = 1024


class InvalidPrefix(ValueError):
    pass


def segment(value: str | None, fallback: str) -> str:
    """One path segment: no slashes, no dot-only names, nothing a shell or URL would trip on."""
    cleaned = _UNSAFE.sub("_", (value or "").strip()).strip("._")
    return cleaned or fallback


def validate_prefix(prefix: str) -> str:
    """A tenant prefix: safe characters, no '..', no leading '/'; a trailing '/' is tolerated
    because the reference worker was configured with `--b2-prefix gateway/`."""
    if prefix.startswith("/"):
        raise InvalidPrefix("b2_prefix must not start with '/'")
    prefix = prefix.rstrip("/")
    if not prefix:
        return ""
    if len(prefix) > 200 or ".." in prefix or not PREFIX_PATTERN.fullmatch(prefix):
        raise InvalidPrefix(
            "b2_prefix may contain letters, digits, '.', '_', '-' and '/' between segments"
        )
    return prefix


def audio_key(*, prefix: str, campaign: str, phone: str | None, file_id: str, ext: str) -> str:
    parts = [p for p in (prefix.strip("/"),) if p]
    parts += [
        segment(campaign, UNKNOWN_CAMPAIGN),
        "audio",
        segment((phone or "").lstrip("+"), UNKNOWN_PHONE),
        f"{file_id}.{segment(ext, 'bin')}",
    ]
    return "/".join(parts)


def transcript_key(audio_object_key: str, fmt: str, *, campaign: str, prefix: str = "") -> str:
    camp = segment(campaign, UNKNOWN_CAMPAIGN)
    marker = f"{camp}/audio/"
    idx = audio_object_key.find(marker)
    rest = (
        audio_object_key[idx + len(marker) :] if idx >= 0 else audio_object_key.rsplit("/", 1)[-1]
    )
    stem = rest.rsplit(".", 1)[0] if "." in rest.rsplit("/", 1)[-1] else rest
    root = prefix.strip("/")
    key = f"{camp}/transcriptions/{fmt}/{stem}.{fmt}"
    return f"{root}/{key}" if root else key


def transcript_keys(audio_object_key: str, *, campaign: str, prefix: str = "") -> TranscriptKeys:
    """The four transcript keys of an audio object; `prefix` is the job's transcript prefix
    ('' for the reference layout)."""
    return TranscriptKeys(
        json=transcript_key(audio_object_key, "json", campaign=campaign, prefix=prefix),
        txt=transcript_key(audio_object_key, "txt", campaign=campaign, prefix=prefix),
        srt=transcript_key(audio_object_key, "srt", campaign=campaign, prefix=prefix),
        vtt=transcript_key(audio_object_key, "vtt", campaign=campaign, prefix=prefix),
    )


def unredacted_transcript_key(audio_object_key: str, *, campaign: str, prefix: str = "") -> str:
    """Where a redacting job with `keep=both` stores the original transcript (JSON only):
    `[<prefix>/]<campaign>/transcriptions/unredacted/<rest>.json`, outside the per-format
    folders that readers of redacted transcripts list."""
    key = transcript_key(audio_object_key, "json", campaign=campaign, prefix=prefix)
    head, marker, tail = key.rpartition("/transcriptions/json/")
    return f"{head}/transcriptions/unredacted/{tail}" if marker else f"unredacted/{key}"


def insights_key(audio_file_id: str, *, campaign: str, prefix: str = "") -> str:
    """Where services/insights stores a job's categories and insights as JSON:
    `[<prefix>/]<campaign>/insights/<uuid>.json`, under the job's transcript prefix ('' for the
    reference layout) like its transcripts. Named after the job alone (no phone)."""
    root = prefix.strip("/")
    key = f"{segment(campaign, UNKNOWN_CAMPAIGN)}/insights/{segment(audio_file_id, 'job')}.json"
    return f"{root}/{key}" if root else key


def redacted_audio_key(audio_object_key: str) -> str:
    """Where the redacted copy of a job's audio goes: beside the original, `.redacted` before
    the extension (`.../<uuid>.redacted.wav`)."""
    head, dot, ext = audio_object_key.rpartition(".")
    if not dot or "/" in ext:
        return f"{audio_object_key}.redacted"
    return f"{head}.redacted.wav"


def loggable(key: str) -> str:
    """What of an object key may go into a log line or an error text: its file name (the job's
    id and extension). The path names the phone, which outlives a deletion in logs."""
    return key.rsplit("/", 1)[-1]


def replaced_audio_key(audio_object_key: str) -> str:
    """Where redacted audio that replaces a job's original goes (`keep=redacted`): the same key
    with a `.wav` extension, since that is what it holds (`.../<uuid>.mp3` -> `.../<uuid>.wav`;
    a `.wav` original keeps its key). The stem is unchanged, so are the transcript keys."""
    head, dot, ext = audio_object_key.rpartition(".")
    if not dot or "/" in ext:
        return f"{audio_object_key}.wav"
    return f"{head}.wav"


def oversized(keys: list[str | None]) -> list[str]:
    """The keys longer than S3 allows (MAX_KEY_BYTES of UTF-8); None entries are skipped."""
    return [k for k in keys if k is not None and len(k.encode("utf-8")) > MAX_KEY_BYTES]
