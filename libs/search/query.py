"""Searching the index: the request (parsed and checked here, so the API and any other caller
refuse the same input), the SQL, and the typed results.

The query text goes to `websearch_to_tsquery` (quoted phrases, `-word`, `OR`; it never raises
on syntax: `:*&|!()<->` are read as text), parsed with every configuration some call was
indexed with, each against the calls indexed with it. Before that, `q` is checked: at most
MAX_QUERY_CHARS characters, no control character (tab and newlines are spaces) and nothing
that is not UTF-8; anything else is `invalid_q`. A query of stop words only finds nothing.

Ranking: a call's rank is the best `ts_rank` of its matching utterances; hits come by rank,
then newest (the job's created_at), then id. The cursor is that keyset of the last hit, so a
call completed while a client pages never shifts or repeats a hit.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from libs import params
from libs.errors import InvalidInput
from libs.search import configs, highlight

MAX_QUERY_CHARS = 400
MAX_ROLE_CHARS = 64
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Matching utterances answered per call in a cross-call search (in time order; the hit's
# match_count has them all). The search within one call answers every match.
MATCHES_PER_CALL = 10
ANY_ROLE = "any"
STATUSES = ("completed",)

# name -> (column, kind, upper bound): the range filters min_<name> / max_<name>.
RANGES: dict[str, tuple[str, str, float]] = {
    "duration": ("duration", "seconds", 7 * 86400.0),
    "talk_ratio": ("talk_ratio", "share", 1.0),
    "silence_share": ("silence_share", "share", 1.0),
    "interruptions": ("interruptions", "count", 1_000_000),
    "overlap": ("overlap", "seconds", 7 * 86400.0),
    "wpm": ("wpm", "rate", 10_000.0),
}


@dataclass(frozen=True, slots=True)
class Cursor:
    rank: float
    created_at: datetime
    audio_file_id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.rank!r}|{self.created_at.isoformat()}|{self.audio_file_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        if value is None or not value.strip():
            return None
        bad = InvalidInput("cursor must be a cursor from a previous page", code="invalid_cursor")
        text = value.strip()
        if len(text) > 300 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            rank_text, when_text, id_text = raw.split("|")
            rank = float(rank_text)
            when = datetime.fromisoformat(when_text)
            job = uuid.UUID(id_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise bad from None
        if when.tzinfo is None or not math.isfinite(rank):
            raise bad
        return cls(rank, when, job)


@dataclass(frozen=True, slots=True)
class Search:
    """One search request; None means no condition."""

    q: str | None = None
    # A role (agent, customer, ...) or a speaker label ("Channel 0", "Speaker A").
    role: str | None = None
    campaign: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # name -> (min, max) for the names of RANGES.
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None


def clean_query(value: str | None) -> str | None:
    """The query text, or None for no query; InvalidInput (`invalid_q`) for what cannot be a
    search: over MAX_QUERY_CHARS, control characters, lone surrogates (not UTF-8)."""
    if value is None:
        return None
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q is longer than {MAX_QUERY_CHARS} characters", code="invalid_q")
    spaced = re.sub(r"[\t\r\n]", " ", value)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in spaced):
        raise InvalidInput("q must be UTF-8 text without control characters", code="invalid_q")
    text = " ".join(spaced.split())
    return text or None


def clean_role(value: str | None) -> str | None:
    if value is None or not value.strip() or value.strip().lower() == ANY_ROLE:
        return None
    role = " ".join(value.split())
    if len(role) > MAX_ROLE_CHARS or any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in role
    ):
        raise InvalidInput(
            f"role must be agent, customer, another role, a speaker label (at most "
            f"{MAX_ROLE_CHARS} characters) or any",
            code="invalid_role",
        )
    return role


def _number(value: str | None, name: str, kind: str, high: float) -> float | None:
    if value is None or not value.strip():
        return None
    if kind == "count":
        return params.parse_int(value, name, default=0, low=0, high=int(high))
    return params.parse_seconds(value, name, default=0.0, high=high)


def parse(query: Mapping[str, str]) -> Search:
    """A search from query parameters (all optional; see the route's documentation)."""
    status = query.get("status")
    if status and status not in STATUSES:
        raise InvalidInput(
            "search finds completed calls only (status=completed)", code="invalid_status"
        )
    campaign = query.get("campaign") or None
    if campaign is not None and len(campaign.encode()) > 256:
        raise InvalidInput("campaign is longer than 256 bytes", code="invalid_campaign")
    since = params.parse_time(query.get("since"), "since", required=False)
    until = params.parse_time(query.get("until"), "until", required=False)
    if since and until and since > until:
        raise InvalidInput("since is after until", code="invalid_since")
    ranges = []
    for name, (_column, kind, high) in RANGES.items():
        low = _number(query.get(f"min_{name}"), f"min_{name}", kind, high)
        top = _number(query.get(f"max_{name}"), f"max_{name}", kind, high)
        if low is not None and top is not None and low > top:
            raise InvalidInput(f"min_{name} is above max_{name}", code=f"invalid_min_{name}")
        if low is not None or top is not None:
            ranges.append((name, low, top))
    return Search(
        q=clean_query(query.get("q")),
        role=clean_role(query.get("role")),
        campaign=campaign,
        since=since,
        until=until,
        ranges=tuple(ranges),
        limit=params.parse_int(
            query.get("limit"), "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT
        ),
        after=Cursor.parse(query.get("cursor")),
    )


# --- SQL -------------------------------------------------------------------------------------

# One arm per configuration in use: the utterances indexed with it that match the query parsed
# with it. `{cfg}`/`{q}` are parameter numbers; `{where}` the utterance conditions.
MATCH_ARM = """
SELECT u.audio_file_id, u.created_at, ts_rank(u.tsv, tq) AS r
FROM media_pipeline.search_utterances u, websearch_to_tsquery(${cfg}::regconfig, ${q}) tq
WHERE u.config = ${cfg}::regconfig AND u.tsv @@ tq{where}
"""
# Calls by their best-matching utterance; the page by (rank, created_at, id).
RANKED = """
WITH m AS ({arms}), calls AS (
    SELECT audio_file_id, max(r)::float8 AS rank, max(created_at) AS created_at
    FROM m GROUP BY audio_file_id
)
SELECT c.audio_file_id, c.campaign_name, c.created_at, c.duration, p.rank
FROM (
    SELECT calls.audio_file_id, calls.rank, calls.created_at
    FROM calls{join}
    WHERE TRUE{where}
    ORDER BY calls.rank DESC, calls.created_at DESC, calls.audio_file_id DESC
    LIMIT ${limit}
) p
JOIN media_pipeline.search_calls c ON c.audio_file_id = p.audio_file_id
ORDER BY p.rank DESC, p.created_at DESC, p.audio_file_id DESC
"""
# Metric filters need the call row before the page is cut.
RANKED_JOIN = "\n    JOIN media_pipeline.search_calls c ON c.audio_file_id = calls.audio_file_id"
RANKED_AFTER = " AND (calls.rank, calls.created_at, calls.audio_file_id) < (${r}, ${t}, ${i})"
# Without q: newest first, on the calls table alone (its key/created_at index).
FILTERED = """
SELECT c.audio_file_id, c.campaign_name, c.created_at, c.duration, 0::float8 AS rank
FROM media_pipeline.search_calls c
WHERE TRUE{where}
ORDER BY c.created_at DESC, c.audio_file_id DESC
LIMIT ${limit}
"""
FILTERED_AFTER = " AND (c.created_at, c.audio_file_id) < (${t}, ${i})"
# Utterance (u.) and call (c.) conditions; `{p}` is the parameter number.
U_KEY = " AND u.api_key_id = ${p}"
U_ROLE = " AND (u.role = lower(${p}) OR u.speaker = ${p})"
U_CAMPAIGN = " AND u.campaign_name = ${p}"
U_SINCE = " AND u.created_at >= ${p}"
U_UNTIL = " AND u.created_at < ${p}"
C_KEY = " AND c.api_key_id = ${p}"
C_ROLE = """ AND EXISTS (
    SELECT 1 FROM media_pipeline.search_utterances u
    WHERE u.audio_file_id = c.audio_file_id AND (u.role = lower(${p}) OR u.speaker = ${p}))"""
C_CAMPAIGN = " AND c.campaign_name = ${p}"
C_SINCE = " AND c.created_at >= ${p}"
C_UNTIL = " AND c.created_at < ${p}"
C_MIN = " AND c.{column} >= ${p}"
C_MAX = " AND c.{column} <= ${p}"
# The matching utterances of the page's calls (at most $4 per call, in time order), marked by
# ts_headline with the same configuration and query (highlight.py).
MATCHES = """
SELECT m.audio_file_id, m.seq, m.start_s, m.end_s, m.role, m.speaker, m.text, m.word_chars,
       m.word_times, m.total,
       ts_headline(m.config, translate(m.text, $5, '  '), websearch_to_tsquery(m.config, $2),
                   $3) AS marked
FROM (
    SELECT u.*, row_number() OVER w AS n, count(*) OVER (PARTITION BY u.audio_file_id) AS total
    FROM media_pipeline.search_utterances u
    WHERE u.audio_file_id = ANY($1::uuid[]) AND u.tsv @@ websearch_to_tsquery(u.config, $2)
      AND ($6::text IS NULL OR u.role = lower($6) OR u.speaker = $6)
    WINDOW w AS (PARTITION BY u.audio_file_id ORDER BY u.seq)
) m
WHERE m.n <= $4
ORDER BY m.audio_file_id, m.seq
"""
CALL_OWNER = """
SELECT api_key_id FROM media_pipeline.search_calls WHERE audio_file_id = $1
"""


class Match(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    role: str | None
    speaker: str | None
    text: str
    # [from, to) character ranges of `text` to highlight.
    highlights: list[tuple[int, int]]
    # Per highlight: the start and end (seconds) of its words (the utterance's without words).
    times: list[tuple[float, float]]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Match:
        spans = highlight.ranges(row["marked"], row["text"])
        start, end = round(float(row["start_s"]), 3), round(float(row["end_s"]), 3)
        return cls(
            start=start,
            end=end,
            role=row["role"],
            speaker=row["speaker"],
            text=row["text"],
            highlights=spans,
            times=highlight.times(spans, row["word_chars"], row["word_times"], (start, end)),
        )


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    audio_file_id: uuid.UUID
    campaign: str
    created_at: datetime
    duration: float
    rank: float
    match_count: int = 0
    matches: list[Match] = msgspec.field(default_factory=list)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Hit:
        return cls(
            audio_file_id=row["audio_file_id"],
            campaign=row["campaign_name"],
            created_at=row["created_at"],
            duration=round(float(row["duration"]), 3),
            rank=float(row["rank"]),
        )


class Page(msgspec.Struct, frozen=True):
    hits: list[Hit]
    next_cursor: str | None


class _Sql:
    """Parameters collected while the statement is put together from the constants above."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def p(self, value: Any) -> int:
        self.args.append(value)
        return len(self.args)

    def cond(self, template: str, value: Any, **fmt: str) -> str:
        return template.format(p=self.p(value), **fmt)


def _call_conditions(
    sql: _Sql, s: Search, api_key_id: uuid.UUID | None, *, utterance_side: bool
) -> str:
    """The conditions on the call row; those the utterance arms already apply are left out."""
    where = ""
    if not utterance_side:
        if api_key_id is not None:
            where += sql.cond(C_KEY, api_key_id)
        if s.role is not None:
            where += sql.cond(C_ROLE, s.role)
        if s.campaign is not None:
            where += sql.cond(C_CAMPAIGN, s.campaign)
        if s.since is not None:
            where += sql.cond(C_SINCE, s.since)
        if s.until is not None:
            where += sql.cond(C_UNTIL, s.until)
    for name, low, top in s.ranges:
        column = RANGES[name][0]
        if low is not None:
            where += sql.cond(C_MIN, low, column=column)
        if top is not None:
            where += sql.cond(C_MAX, top, column=column)
    return where


def statement(
    s: Search, api_key_id: uuid.UUID | None, config_names: Sequence[str]
) -> tuple[str, list[Any]]:
    """The page query for `s` (one more row than the limit) and its arguments."""
    sql = _Sql()
    if s.q is None:
        where = _call_conditions(sql, s, api_key_id, utterance_side=False)
        if s.after is not None:
            where += FILTERED_AFTER.format(t=sql.p(s.after.created_at), i=sql.p(s.after.audio_file_id))
        return FILTERED.format(where=where, limit=sql.p(s.limit + 1)), sql.args
    q = sql.p(s.q)
    shared = ""
    if api_key_id is not None:
        shared += sql.cond(U_KEY, api_key_id)
    if s.role is not None:
        shared += sql.cond(U_ROLE, s.role)
    if s.campaign is not None:
        shared += sql.cond(U_CAMPAIGN, s.campaign)
    if s.since is not None:
        shared += sql.cond(U_SINCE, s.since)
    if s.until is not None:
        shared += sql.cond(U_UNTIL, s.until)
    arms = " UNION ALL ".join(
        MATCH_ARM.format(cfg=sql.p(name), q=q, where=shared) for name in config_names
    )
    where = _call_conditions(sql, s, api_key_id, utterance_side=True)
    if s.after is not None:
        where += RANKED_AFTER.format(
            r=sql.p(s.after.rank), t=sql.p(s.after.created_at), i=sql.p(s.after.audio_file_id)
        )
    return (
        RANKED.format(
            arms=arms,
            join=RANKED_JOIN if s.ranges else "",
            where=where,
            limit=sql.p(s.limit + 1),
        ),
        sql.args,
    )


async def matches(
    conn: asyncpg.Connection | asyncpg.Pool,
    ids: Sequence[uuid.UUID],
    q: str,
    role: str | None,
    *,
    per_call: int,
) -> tuple[dict[uuid.UUID, list[Match]], dict[uuid.UUID, int]]:
    """The matching utterances of the calls `ids`, at most `per_call` each, and their counts."""
    rows = await conn.fetch(
        MATCHES, list(ids), q, highlight.OPTIONS, per_call, highlight.SENTINELS, role
    )
    found: dict[uuid.UUID, list[Match]] = {}
    totals: dict[uuid.UUID, int] = {}
    for row in rows:
        found.setdefault(row["audio_file_id"], []).append(Match.from_row(row))
        totals[row["audio_file_id"]] = int(row["total"])
    return found, totals


async def search(
    conn: asyncpg.Connection | asyncpg.Pool, s: Search, *, api_key_id: uuid.UUID | None
) -> Page:
    """A page of hits for `s`: the key's calls (`api_key_id`), or every call (None)."""
    names: list[str] = []
    if s.q is not None:
        names = await configs.in_use(conn)
        if not names:
            return Page([], None)
    text, args = statement(s, api_key_id, names)
    rows = await conn.fetch(text, *args)
    page = [Hit.from_row(r) for r in rows[: s.limit]]
    if s.q is not None and page:
        found, totals = await matches(
            conn, [h.audio_file_id for h in page], s.q, s.role, per_call=MATCHES_PER_CALL
        )
        page = [
            msgspec.structs.replace(
                h, matches=found.get(h.audio_file_id, []), match_count=totals.get(h.audio_file_id, 0)
            )
            for h in page
        ]
    next_cursor = None
    if len(rows) > s.limit:
        last = page[-1]
        next_cursor = Cursor(last.rank, last.created_at, last.audio_file_id).encode()
    return Page(page, next_cursor)


async def owner(conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID) -> uuid.UUID | None:
    """The key that owns an indexed call; None when the call is not in the index."""
    value = await conn.fetchval(CALL_OWNER, job_id)
    return value if isinstance(value, uuid.UUID) else None


async def within_call(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, q: str, role: str | None = None
) -> list[Match]:
    """Every matching utterance of one call, with each highlight's word times."""
    found, _ = await matches(conn, [job_id], q, role, per_call=1_000_000)
    return found.get(job_id, [])
