"""Speaker names of a job (owner of media_pipeline.speaker_names): "Speaker A" or "agent"
becomes "Mrs Jones".

The stored transcript objects keep the engine's labels. Names are applied where the transcript
is served: txt/srt/vtt are rendered again from the stored JSON with each named utterance
labelled by its name (`apply`), and the JSON keeps its labels and gains a `speaker_names` map
(`with_names`). So the four stored formats always agree with each other, a rerun keeps the
names, and nothing is half-rewritten if object storage fails mid-way. A name is personal data:
the job's tombstone removes it (a trigger of migration 0036)."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping

import asyncpg
import msgspec

from libs.errors import InvalidInput
from libs.transcript.model import Transcript
from libs.transcript.render import OutputFormatName, render

MAX_NAME = 64
MAX_NAMES = 64
# Bidirectional overrides and isolates would let a name reorder the text around it.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")

UPSERT = """
INSERT INTO media_pipeline.speaker_names (audio_file_id, names, updated_at, updated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (audio_file_id) DO UPDATE
SET names = EXCLUDED.names, updated_at = now(), updated_by = EXCLUDED.updated_by
"""
DELETE = "DELETE FROM media_pipeline.speaker_names WHERE audio_file_id = $1"
SELECT = "SELECT names FROM media_pipeline.speaker_names WHERE audio_file_id = $1"


def labels(transcript: Transcript) -> set[str]:
    """What a name may be given to: each utterance's speaker label, its role and the label
    the renderers print ("Agent")."""
    found: set[str] = set()
    for u in transcript.utterances:
        found.update(x for x in (u.speaker, u.role, u.label) if x)
    return found


def _clean(value: str) -> bool:
    return not any(
        unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI for ch in value
    )


def validate(names: Mapping[str, str], transcript: Transcript) -> dict[str, str]:
    """The names to store: each key a label of the transcript (`labels`), each name 1-64
    characters (trimmed) with no control character; raises InvalidInput (`invalid_speaker`,
    `invalid_speaker_name`)."""
    if len(names) > MAX_NAMES:
        raise InvalidInput(f"at most {MAX_NAMES} names", code="invalid_speaker")
    known = labels(transcript)
    out: dict[str, str] = {}
    for label, raw in names.items():
        if label not in known:
            shown = label[:40] if _clean(label) else "(a label with control characters)"
            raise InvalidInput(
                f"no speaker {shown!r} in this transcript; known: {sorted(known)}",
                code="invalid_speaker",
            )
        name = " ".join(raw.split())
        if not 1 <= len(name) <= MAX_NAME or not _clean(raw):
            raise InvalidInput(
                f"a speaker name has 1 to {MAX_NAME} characters and no control characters",
                code="invalid_speaker_name",
            )
        out[label] = name
    return out


def apply(transcript: Transcript, names: Mapping[str, str]) -> Transcript:
    """The transcript with each named utterance's speaker set to its name (and its role
    dropped, so the renderers print the name)."""
    if not names:
        return transcript
    utterances = []
    for u in transcript.utterances:
        name = names.get(u.speaker) or (u.role and names.get(u.role)) or names.get(u.label)
        utterances.append(msgspec.structs.replace(u, speaker=name, role=None) if name else u)
    return msgspec.structs.replace(transcript, utterances=tuple(utterances))


def with_names(stored_json: bytes, names: Mapping[str, str]) -> bytes:
    """The stored JSON transcript, labels kept, with the `speaker_names` map added."""
    document = msgspec.json.decode(stored_json)
    if isinstance(document, dict):
        document["speaker_names"] = dict(names)
    return msgspec.json.encode(document, order="deterministic")


def render_named(stored_json: bytes, fmt: OutputFormatName, names: Mapping[str, str]) -> bytes:
    """`fmt` of the stored JSON transcript with the names applied."""
    if fmt == "json":
        return with_names(stored_json, names)
    transcript = msgspec.json.decode(stored_json, type=Transcript)
    return render(apply(transcript, names), fmt)


async def names_for(conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID) -> dict[str, str]:
    names = await conn.fetchval(SELECT, job_id)
    return dict(names) if names else {}


async def save(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, names: Mapping[str, str], *, by: str
) -> None:
    """Replace the job's names (an empty map removes them)."""
    if names:
        await conn.execute(UPSERT, job_id, dict(names), by)
    else:
        await conn.execute(DELETE, job_id)
