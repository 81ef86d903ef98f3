"""Subject names. The tenant prefix is the last token so pools and operators can filter on it."""

from __future__ import annotations

import re

ROOT = "transcribe"
AUDIO_STORED = f"{ROOT}.audio.stored"
TRANSCRIPT_READY = f"{ROOT}.transcript.ready"
TRANSCRIPT_FAILED = f"{ROOT}.transcript.failed"
TRANSCRIPT_DELETED = f"{ROOT}.transcript.deleted"
JOB_PROGRESS = f"{ROOT}.job.progress"
INSIGHTS_READY = f"{ROOT}.insights.ready"

# The empty prefix needs a token of its own; "~" can never come out of escaping a real prefix.
DEFAULT_TENANT_TOKEN = "~"  # noqa: S105 - not a secret

_SAFE = re.compile(r"[A-Za-z0-9_-]")


def tenant_token(prefix: str) -> str:
    """A NATS-safe token for a tenant prefix, injective so two tenants never share a subject.

    Characters outside [A-Za-z0-9_-] (dots, slashes, wildcards, spaces) become ~XX (UTF-8 hex).
    """
    prefix = prefix.strip("/")
    if not prefix:
        return DEFAULT_TENANT_TOKEN
    out: list[str] = []
    for ch in prefix:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode())
    return "".join(out)


def audio_stored(prefix: str) -> str:
    return f"{AUDIO_STORED}.{tenant_token(prefix)}"


def transcript_ready(prefix: str) -> str:
    return f"{TRANSCRIPT_READY}.{tenant_token(prefix)}"


def transcript_failed(prefix: str) -> str:
    return f"{TRANSCRIPT_FAILED}.{tenant_token(prefix)}"


def transcript_deleted(prefix: str) -> str:
    return f"{TRANSCRIPT_DELETED}.{tenant_token(prefix)}"


def job_progress(prefix: str) -> str:
    return f"{JOB_PROGRESS}.{tenant_token(prefix)}"


def insights_ready(prefix: str) -> str:
    return f"{INSIGHTS_READY}.{tenant_token(prefix)}"


def for_event_type(event_type: str, prefix: str) -> str:
    return {
        "audio.stored": audio_stored,
        "transcript.ready": transcript_ready,
        "transcript.failed": transcript_failed,
        "transcript.deleted": transcript_deleted,
        "job.progress": job_progress,
        "insights.ready": insights_ready,
    }[event_type](prefix)
