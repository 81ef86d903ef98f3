"""Finding a recording in the user's own database (the source of truth for phone and campaign).

As in the reference: exact `r.id::text = :rid` first, then the location fallback. Unlike the
reference, LIKE metacharacters in the id are escaped, so `%` or `_` never match arbitrary rows,
and several matches are an error instead of a silent pick.

Tenants: the recordings database has no tenant column, so a recording belongs to a tenant by
its id. A tenant key (one with a tenant prefix, not the bootstrap key) finds only recordings
whose id starts with `<tenant prefix>/` (`acme/10234` for the key of `acme`), by the exact id
only (no location fallback); any other id is 404 `recording_not_found`, as if it did not exist.
The same holds for a submitted `url` equal to a recording's location: another tenant's (or the
operator's) recording lends it nothing. The operator's keys (bootstrap, `--unscoped`) find every
recording. The rule is applied here, after any query, so a LOOKUP_SQL_FILE cannot lose it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import asyncpg

from libs import db
from libs.apikeys import ApiKey
from libs.settings import Settings, SettingsError

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
# A `url` submission that is exactly a recording's location takes its data from the database,
# as the reference's "url: exact public.recordings.location" promises. $1 is the URL.
BY_URL = """
SELECT r.id::text AS recording_id, r.location AS url, c.phone AS phone,
       cm.campaign_name AS campaign_name, r.campaign_id::text AS campaign_id,
       r.started AS started, r.stopped AS stopped
FROM public.recordings r
LEFT JOIN public.contacts c ON c.id = r.contact_id
LEFT JOIN public.campaign_map cm ON cm.campaign_id::text = r.campaign_id::text
WHERE r.location = $1
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
        return int(rid) if rid.isascii() and rid.isdigit() and len(rid) < 19 else None


@dataclass(frozen=True, slots=True)
class LookupQueries:
    by_id: str = BY_ID
    # None: no location fallback (a custom file may leave it out).
    by_location: str | None = BY_LOCATION
    campaign_name: str = CAMPAIGN_NAME
    # None: URL submissions are never matched to recordings.
    by_url: str | None = BY_URL

    @classmethod
    def parse(cls, text: str, *, source: str = "lookup SQL") -> LookupQueries:
        """Named queries, each introduced by a `-- name: <query>` line (by_id is required;
        by_location and campaign_name are optional)."""
        sections: dict[str, str] = {}
        current: str | None = None
        for line in text.splitlines():
            marker = _NAME_MARKER.match(line)
            if marker:
                current = marker.group(1)
                if current not in QUERY_NAMES:
                    raise SettingsError(
                        f"{source}: unknown query {current!r}; expected {', '.join(QUERY_NAMES)}"
                    )
                if current in sections:
                    raise SettingsError(f"{source}: query {current!r} appears twice")
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
            elif line.strip() and not line.strip().startswith("--"):
                raise SettingsError(f"{source}: SQL before the first '-- name: <query>' line")
        queries = {k: v.strip().rstrip(";").strip() for k, v in sections.items()}
        empty = [k for k, v in queries.items() if not v]
        if empty:
            raise SettingsError(f"{source}: query {empty[0]!r} is empty")
        if "by_id" not in queries:
            raise SettingsError(f"{source}: the by_id query is required")
        return cls(
            by_id=queries["by_id"],
            by_location=queries.get("by_location"),
            campaign_name=queries.get("campaign_name", CAMPAIGN_NAME),
            by_url=queries.get("by_url"),
        )

    async def validate(self, conn: asyncpg.Connection, *, source: str) -> None:
        """Prepare every query against the database: one `$1` parameter each, the columns the
        code reads. Raises SettingsError, so a bad file stops the service at start."""
        checks: list[tuple[str, str, frozenset[str]]] = [("by_id", self.by_id, RECORD_COLUMNS)]
        if self.by_location is not None:
            checks.append(("by_location", self.by_location, RECORD_COLUMNS))
        if self.by_url is not None:
            checks.append(("by_url", self.by_url, RECORD_COLUMNS))
        checks.append(("campaign_name", self.campaign_name, frozenset()))
        for name, sql, required in checks:
            try:
                shape = await db.check_statement(conn, sql)
            except db.StatementFailed as exc:
                raise SettingsError(f"{source}: query {name!r} does not prepare: {exc}") from exc
            params = shape.parameters
            if params != 1:
                raise SettingsError(
                    f"{source}: query {name!r} must take exactly one parameter ($1), not {params}"
                )
            columns = set(shape.columns)
            if name == "campaign_name" and len(columns) != 1:
                raise SettingsError(f"{source}: query 'campaign_name' must return one column")
            missing = sorted(required - columns)
            if missing:
                raise SettingsError(
                    f"{source}: query {name!r} must return columns {', '.join(missing)}"
                )


QUERY_NAMES = ("by_id", "by_location", "campaign_name", "by_url")
# What a recording query must return; phone, campaign_name, campaign_id, started and stopped are
# read when present.
RECORD_COLUMNS = frozenset({"recording_id", "url"})
_NAME_MARKER = re.compile(r"^\s*--\s*name:\s*([A-Za-z_]+)\s*$")


async def load_queries(settings: Settings, conn: asyncpg.Connection) -> LookupQueries:
    """The configured lookup (LOOKUP_SQL_FILE), validated; or the reference queries, which may
    lack their tables on a database that only takes URLs and uploads."""
    path: Path | None = settings.lookup_sql_file
    if path is None:
        return LookupQueries()
    source = f"LOOKUP_SQL_FILE {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read: {exc}") from exc
    queries = LookupQueries.parse(text, source=source)
    await queries.validate(conn, source=source)
    return queries


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _as_recording(row: asyncpg.Record) -> Recording:
    started = row.get("started")
    stopped = row.get("stopped")
    return Recording(
        recording_id=str(row["recording_id"]),
        url=str(row["url"]),
        phone=_text(row.get("phone")),
        campaign_name=_text(row.get("campaign_name")),
        campaign_id=_text(row.get("campaign_id")),
        started=started if isinstance(started, datetime) else None,
        stopped=stopped if isinstance(stopped, datetime) else None,
    )


def lookup_tenant(key: ApiKey) -> str:
    """The tenant whose recordings `key` may look up; '' for the operator's keys (all)."""
    return "" if key.is_bootstrap else key.tenant_prefix


def in_tenant(recording_id: str, tenant: str) -> bool:
    """Whether a recording id belongs to `tenant` ('' : the operator, who sees every one)."""
    return not tenant or recording_id.startswith(tenant.rstrip("/") + "/")


async def find_recording(
    conn: asyncpg.Connection | asyncpg.Pool,
    recording_id: str,
    queries: LookupQueries,
    *,
    tenant: str = "",
) -> Recording:
    """The recording `recording_id` names; for a tenant (see the module docstring) only by
    its exact id, and only when the id is under the tenant's prefix."""
    rid = recording_id.strip()
    if not rid:
        raise RecordingNotFound("recording_id is empty")
    if not in_tenant(rid, tenant):
        raise RecordingNotFound(f"no recording matches recording_id {rid!r}")
    if tenant:
        queries = replace(queries, by_location=None)
    rows = await conn.fetch(queries.by_id, rid)
    # An id of only punctuation ('_', '%', '-', '/') would match, literally, a character that
    # most locations contain: such ids never take the location fallback.
    if not rows and queries.by_location is not None and any(c.isalnum() for c in rid):
        rows = await conn.fetch(queries.by_location, escape_like(rid))
    if not rows:
        raise RecordingNotFound(f"no recording matches recording_id {rid!r}")
    if len(rows) > 1:
        raise AmbiguousRecording(
            f"recording_id {rid!r} matches several recordings; use the exact id"
        )
    found = _as_recording(rows[0])
    if not in_tenant(found.recording_id, tenant):  # a custom query matched another id
        raise RecordingNotFound(f"no recording matches recording_id {rid!r}")
    return found


async def find_by_url(
    conn: asyncpg.Connection | asyncpg.Pool, url: str, queries: LookupQueries, *, tenant: str = ""
) -> Recording | None:
    """The recording whose location is exactly `url`; None when none (or several) match, or
    when it is not the tenant's, so the submission proceeds as a plain URL with the form's
    fallbacks."""
    if queries.by_url is None:
        return None
    try:
        rows = await conn.fetch(queries.by_url, url)
    except db.MissingTable:
        return None
    if len(rows) != 1:
        return None
    found = _as_recording(rows[0])
    return found if in_tenant(found.recording_id, tenant) else None


async def campaign_name(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_id: str, queries: LookupQueries
) -> str | None:
    try:
        value = await conn.fetchval(queries.campaign_name, campaign_id)
    except db.MissingTable:
        return None
    return None if value is None else str(value)
