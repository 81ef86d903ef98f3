"""Finding a recording in the user's own database (the source of truth for phone and campaign).

As in the reference: exact `r.id::text = :rid` first, then the location fallback. Unlike the
reference, LIKE metacharacters in the id are escaped, so `%` or `_` never match arbitrary rows,
and several matches are an error instead of a silent pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# Both queries return: recording_id, url, phone, campaign_name, campaign_id, started, stopped.
# $1 is the recording id; in the fallback it is the LIKE-escaped id (escape character '\').
BY_ID = """
SELECT r.id::text AS recording_id, r.location AS url, c.phone AS phone,
       cm.campaign_name AS campaign_name, r.campaign_id::text AS campaign_id,
       r.started AS started, r.stopped AS stopped
FROM public.recordings r
LEFT JOIN public.contacts c ON c.id = r.contact_id
LEFT JOIN public.campaign_map cm ON cm.campaign_id::text = r.campaign_id::text
WHERE r.id::text = $1
LIMIT 2
"""
BY_LOCATION = """
SELECT r.id::text AS recording_id, r.location AS url, c.phone AS phone,
       cm.campaign_name AS campaign_name, r.campaign_id::text AS campaign_id,
       r.started AS started, r.stopped AS stopped
FROM public.recordings r
LEFT JOIN public.contacts c ON c.id = r.contact_id
LEFT JOIN public.campaign_map cm ON cm.campaign_id::text = r.campaign_id::text
WHERE r.location LIKE ('%' || $1 || '%') ESCAPE '\\'
LIMIT 2
"""
# Resolving a campaign name when the client gave only campaign_id.
CAMPAIGN_NAME = "SELECT campaign_name FROM public.campaign_map WHERE campaign_id::text = $1"


class RecordingNotFound(LookupError):
    pass


class AmbiguousRecording(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Recording:
    recording_id: str
    url: str
    phone: str | None
    campaign_name: str | None
    campaign_id: str | None
    started: datetime | None
    stopped: datetime | None

    @property
    def source_row_id(self) -> int | None:
        # Non-numeric ids stay text; only numeric ones fit the bigint column.
        rid = self.recording_id
        return int(rid) if rid.isdigit() and len(rid) < 19 else None


@dataclass(frozen=True, slots=True)
class LookupQueries:
    by_id: str = BY_ID
    by_location: str = BY_LOCATION
    campaign_name: str = CAMPAIGN_NAME


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_recording(row: asyncpg.Record) -> Recording:
    started = row["started"]
    stopped = row["stopped"]
    return Recording(
        recording_id=str(row["recording_id"]),
        url=str(row["url"]),
        phone=None if row["phone"] is None else str(row["phone"]),
        campaign_name=row["campaign_name"],
        campaign_id=row["campaign_id"],
        started=started if isinstance(started, datetime) else None,
        stopped=stopped if isinstance(stopped, datetime) else None,
    )


async def find_recording(
    conn: asyncpg.Connection | asyncpg.Pool, recording_id: str, queries: LookupQueries
) -> Recording:
    rid = recording_id.strip()
    if not rid:
        raise RecordingNotFound("recording_id is empty")
    rows = await conn.fetch(queries.by_id, rid)
    if not rows:
        rows = await conn.fetch(queries.by_location, escape_like(rid))
    if not rows:
        raise RecordingNotFound(f"no recording matches recording_id {rid!r}")
    if len(rows) > 1:
        raise AmbiguousRecording(
            f"recording_id {rid!r} matches several recordings; use the exact id"
        )
    return _as_recording(rows[0])


async def campaign_name(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_id: str, queries: LookupQueries
) -> str | None:
    try:
        value = await conn.fetchval(queries.campaign_name, campaign_id)
    except asyncpg.exceptions.UndefinedTableError:
        return None
    return None if value is None else str(value)
