"""Searching the index: the request (parsed and checked here, so the API and any other caller
refuse the same input), the SQL, and the typed results.

The query text goes to `websearch_to_tsquery` (quoted phrases, `-word`, `OR`; it never raises
on syntax: `:*&|!()<->` are read as text), parsed with every configuration some call was
indexed with, each against the calls indexed with it. Before that, `q` is checked: at most
MAX_QUERY_CHARS characters, no control character (tab and newlines are spaces) and nothing
that is not UTF-8; anything else is `invalid_q`. A query of stop words only finds nothing.

Ranking: a call's rank is the best `ts_rank` of its matching utterances; hits come by rank,
then newest (the job's created_at), then id. Ranking every match of a word said in every call
would visit every one of them, so relevance is ranked within windows of the newest
RANK_WINDOW matching utterances: a query with fewer matches (any selective one) is ranked
exactly; a more common one ranks the calls of its newest RANK_WINDOW matches, and the pages
after them continue with the next older window. The cursor holds the window's bounds and the
(rank, created_at, id) of the last hit, so a call completed while a client pages never shifts
or repeats a hit; a page may hold fewer hits than `limit` (even none) at the end of a window
while `next_cursor` goes on.
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
# A category name or an outcome (issue 21 filters).
MAX_LABEL_CHARS = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Matching utterances answered per call in a cross-call search (in time order; the hit's
# match_count has them all). The search within one call answers every match.
MATCHES_PER_CALL = 10
# Relevance is ranked among at most this many of the newest matching utterances at a time.
RANK_WINDOW = 2000
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


class Key(msgspec.Struct, frozen=True, array_like=True):
    """A call's place in the order: (rank, created_at, id)."""

    rank: float
    created_at: datetime
    audio_file_id: uuid.UUID

    def order(self) -> tuple[float, datetime, uuid.UUID]:
        return (self.rank, self.created_at, self.audio_file_id)


class Bound(msgspec.Struct, frozen=True, array_like=True):
    """A call's place in time: (created_at, id)."""

    created_at: datetime
    audio_file_id: uuid.UUID


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where the next page starts: within the window of calls with time in (lower, upper]
    (None: unbounded; `open_lower`: the window's lower bound is still to be found), after
    `after` (None: the window's first hit)."""

    upper: Bound | None = None
    lower: Bound | None = None
    open_lower: bool = True
    after: Key | None = None

    def encode(self) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode(self)).decode().rstrip("=")

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        if value is None or not value.strip():
            return None
        bad = InvalidInput("cursor must be a cursor from a previous page", code="invalid_cursor")
        text = value.strip()
        if len(text) > 400 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            cursor = msgspec.json.decode(raw, type=cls)
        except (binascii.Error, msgspec.DecodeError, msgspec.ValidationError):
            raise bad from None
        times = [b.created_at for b in (cursor.upper, cursor.lower, cursor.after) if b]
        if any(t.tzinfo is None for t in times):
            raise bad
        if cursor.after is not None and not math.isfinite(cursor.after.rank):
            raise bad
        return cursor


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
    # Call insights (issue 21): a category the call matched; the outcome the chat model chose.
    category: str | None = None
    outcome: str | None = None
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
    if len(role) > MAX_ROLE_CHARS or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in role):
        raise InvalidInput(
            f"role must be agent, customer, another role, a speaker label (at most "
            f"{MAX_ROLE_CHARS} characters) or any",
            code="invalid_role",
        )
    return role


def clean_label(value: str | None, name: str) -> str | None:
    """A category name or an outcome: exact text, at most MAX_LABEL_CHARS, no control
    characters; blank means no condition."""
    if value is None or not value.strip():
        return None
    label = value.strip()
    if len(label) > MAX_LABEL_CHARS or any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in label
    ):
        raise InvalidInput(
            f"{name} must be text of at most {MAX_LABEL_CHARS} characters without control "
            "characters",
            code=f"invalid_{name}",
        )
    return label


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
        category=clean_label(query.get("category"), "category"),
        outcome=clean_label(query.get("outcome"), "outcome"),
        limit=params.parse_int(
            query.get("limit"), "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT
        ),
        after=Cursor.parse(query.get("cursor")),
    )


# --- SQL -------------------------------------------------------------------------------------

# One arm per configuration in use: the utterances indexed with it that match the query parsed
# with it, newest first. `{cfg}`/`{q}` are parameter numbers, `{join}` the call row when a
# metric filter needs it, `{where}` the conditions, `{cap}` the window's LIMIT (or nothing).
MATCH_ARM = """(
SELECT u.audio_file_id, u.created_at, ts_rank(u.tsv, tq)::float8 AS r
FROM media_pipeline.search_utterances u{join}, websearch_to_tsquery(${cfg}::regconfig, ${q}) tq
WHERE u.config = ${cfg}::regconfig AND u.tsv @@ tq{where}
ORDER BY u.created_at DESC, u.audio_file_id DESC{cap})"""
ARM_JOIN = "\n    JOIN media_pipeline.search_calls c ON c.audio_file_id = u.audio_file_id"
ARM_CAP = "\nLIMIT ${p}"
MATCHED = """
SELECT audio_file_id, created_at, r FROM ({arms}) a
ORDER BY created_at DESC, audio_file_id DESC{cap}
"""
# Without q: newest first, on the calls table alone (its key/created_at index).
FILTERED = """
SELECT c.audio_file_id, c.campaign_name, c.created_at, c.duration, 0::float8 AS rank
FROM media_pipeline.search_calls c
WHERE TRUE{where}
ORDER BY c.created_at DESC, c.audio_file_id DESC
LIMIT ${limit}
"""
FILTERED_AFTER = " AND (c.created_at, c.audio_file_id) < (${t}, ${i})"
CALLS = """
SELECT audio_file_id, campaign_name, created_at, duration FROM media_pipeline.search_calls
WHERE audio_file_id = ANY($1::uuid[])
"""
# Conditions; `{p}` is the parameter number.
U_KEY = " AND u.api_key_id = ${p}"
U_ROLE = " AND (u.role = lower(${p}) OR u.speaker = ${p})"
U_CAMPAIGN = " AND u.campaign_name = ${p}"
U_SINCE = " AND u.created_at >= ${p}"
U_UNTIL = " AND u.created_at < ${p}"
U_UPPER = " AND (u.created_at, u.audio_file_id) <= (${t}, ${i})"
U_LOWER = " AND (u.created_at, u.audio_file_id) > (${t}, ${i})"
C_KEY = " AND c.api_key_id = ${p}"
C_ROLE = """ AND EXISTS (
    SELECT 1 FROM media_pipeline.search_utterances u
    WHERE u.audio_file_id = c.audio_file_id AND (u.role = lower(${p}) OR u.speaker = ${p}))"""
C_CAMPAIGN = " AND c.campaign_name = ${p}"
C_SINCE = " AND c.created_at >= ${p}"
C_UNTIL = " AND c.created_at < ${p}"
# Call insights (issue 21): read-only joins on libs/categories' and libs/insights' tables.
C_CATEGORY = """ AND EXISTS (
    SELECT 1 FROM media_pipeline.category_matches m
    WHERE m.audio_file_id = c.audio_file_id AND m.name = ${p})"""
U_CATEGORY = C_CATEGORY.replace("c.audio_file_id", "u.audio_file_id")
C_OUTCOME = """ AND EXISTS (
    SELECT 1 FROM media_pipeline.insights i
    WHERE i.audio_file_id = c.audio_file_id AND i.insights->>'outcome' = ${p})"""
U_OUTCOME = C_OUTCOME.replace("c.audio_file_id", "u.audio_file_id")
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
# The statements of one search differ in their parameters only, yet a common word and a rare
# phrase want different plans: no generic plan (and no JIT compile for a 50-row page).
PLAN_PER_SEARCH = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"
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


def _metric_conditions(sql: _Sql, s: Search) -> str:
    where = ""
    for name, low, top in s.ranges:
        column = RANGES[name][0]
        if low is not None:
            where += sql.cond(C_MIN, low, column=column)
        if top is not None:
            where += sql.cond(C_MAX, top, column=column)
    return where


# The key, role, campaign, time-window, category and outcome conditions, on calls (c) and on
# utterances (u).
_CALL_FILTERS = (C_KEY, C_ROLE, C_CAMPAIGN, C_SINCE, C_UNTIL, C_CATEGORY, C_OUTCOME)
_UTTERANCE_FILTERS = (U_KEY, U_ROLE, U_CAMPAIGN, U_SINCE, U_UNTIL, U_CATEGORY, U_OUTCOME)


def _filter_conditions(
    sql: _Sql, s: Search, api_key_id: uuid.UUID | None, templates: tuple[str, ...]
) -> str:
    """The conditions for the key, role, campaign, since, until, category and outcome given, in
    that order."""
    where = ""
    values = (api_key_id, s.role, s.campaign, s.since, s.until, s.category, s.outcome)
    for template, value in zip(templates, values, strict=True):
        if value is not None:
            where += sql.cond(template, value)
    return where


def filtered_statement(
    s: Search, api_key_id: uuid.UUID | None, after: Key | None
) -> tuple[str, list[Any]]:
    """Without q: the page (one more row than the limit), newest first."""
    sql = _Sql()
    where = _filter_conditions(sql, s, api_key_id, _CALL_FILTERS)
    where += _metric_conditions(sql, s)
    if after is not None:
        where += FILTERED_AFTER.format(t=sql.p(after.created_at), i=sql.p(after.audio_file_id))
    return FILTERED.format(where=where, limit=sql.p(s.limit + 1)), sql.args


def matched_statement(
    s: Search,
    api_key_id: uuid.UUID | None,
    config_names: Sequence[str],
    *,
    upper: Bound | None,
    lower: Bound | None,
    cap: int | None,
) -> tuple[str, list[Any]]:
    """The matching utterances (call, time, rank) with time in (lower, upper], newest first,
    at most `cap` of them (None: all)."""
    assert s.q is not None
    sql = _Sql()
    q = sql.p(s.q)
    where = _filter_conditions(sql, s, api_key_id, _UTTERANCE_FILTERS)
    if upper is not None:
        where += U_UPPER.format(t=sql.p(upper.created_at), i=sql.p(upper.audio_file_id))
    if lower is not None:
        where += U_LOWER.format(t=sql.p(lower.created_at), i=sql.p(lower.audio_file_id))
    where += _metric_conditions(sql, s)
    limit = "" if cap is None else ARM_CAP.format(p=sql.p(cap))
    arms = " UNION ALL ".join(
        MATCH_ARM.format(
            cfg=sql.p(name),
            q=q,
            join=ARM_JOIN if s.ranges else "",
            where=where,
            cap=limit,
        )
        for name in config_names
    )
    return MATCHED.format(arms=arms, cap=limit), sql.args


def rank_calls(rows: Sequence[tuple[uuid.UUID, datetime, float]]) -> list[Key]:
    """Calls by their best-matching utterance: by rank, then newest, then id (descending)."""
    best: dict[uuid.UUID, Key] = {}
    for job, at, r in rows:
        known = best.get(job)
        if known is None or r > known.rank:
            best[job] = Key(float(r), at, job)
    return sorted(best.values(), key=Key.order, reverse=True)


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
    db: asyncpg.Connection | asyncpg.Pool, s: Search, *, api_key_id: uuid.UUID | None
) -> Page:
    """A page of hits for `s`: the key's calls (`api_key_id`), or every call (None). One
    read-only transaction: the hits and their matches come from one snapshot."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await search(conn, s, api_key_id=api_key_id)
    async with db.transaction(readonly=True):
        await db.execute(PLAN_PER_SEARCH)
        return await _search(db, s, api_key_id=api_key_id)


async def _search(conn: asyncpg.Connection, s: Search, *, api_key_id: uuid.UUID | None) -> Page:
    cursor = s.after or Cursor()
    if s.q is None:
        text, args = filtered_statement(s, api_key_id, cursor.after)
        rows = await conn.fetch(text, *args)
        page = [Hit.from_row(r) for r in rows[: s.limit]]
        more = None
        if len(rows) > s.limit:
            last = page[-1]
            more = Cursor(after=Key(0.0, last.created_at, last.audio_file_id)).encode()
        return Page(page, more)
    names = await configs.in_use(conn)
    if not names:
        return Page([], None)
    upper, lower = cursor.upper, cursor.lower
    if cursor.open_lower:
        # A new window: the newest RANK_WINDOW matches below `upper`. Full, it ends before its
        # oldest call (whose other matches may lie beyond it); that call opens the next one.
        text, args = matched_statement(
            s, api_key_id, names, upper=upper, lower=None, cap=RANK_WINDOW
        )
        rows = await conn.fetch(text, *args)
        lower = None
        if len(rows) == RANK_WINDOW:
            edge = Bound(rows[-1]["created_at"], rows[-1]["audio_file_id"])
            newest = Bound(rows[0]["created_at"], rows[0]["audio_file_id"])
            if newest != edge:
                lower = edge
                rows = [
                    r
                    for r in rows
                    if (r["created_at"], r["audio_file_id"])
                    > (
                        edge.created_at,
                        edge.audio_file_id,
                    )
                ]
            else:  # one call holds the whole window: rank everything left instead
                text, args = matched_statement(
                    s, api_key_id, names, upper=upper, lower=None, cap=None
                )
                rows = await conn.fetch(text, *args)
    else:
        text, args = matched_statement(s, api_key_id, names, upper=upper, lower=lower, cap=None)
        rows = await conn.fetch(text, *args)
    ranked = rank_calls([(r["audio_file_id"], r["created_at"], r["r"]) for r in rows])
    if cursor.after is not None:
        after = cursor.after.order()
        ranked = [k for k in ranked if k.order() < after]
    keys = ranked[: s.limit]
    more = None
    if len(ranked) > s.limit:
        more = Cursor(upper=upper, lower=lower, open_lower=False, after=keys[-1]).encode()
    elif lower is not None:
        more = Cursor(upper=lower, open_lower=True).encode()
    return Page(await _hits(conn, keys, s), more)


async def _hits(
    conn: asyncpg.Connection | asyncpg.Pool, keys: Sequence[Key], s: Search
) -> list[Hit]:
    if not keys:
        return []
    assert s.q is not None
    ids = [k.audio_file_id for k in keys]
    calls = {r["audio_file_id"]: r for r in await conn.fetch(CALLS, ids)}
    found, totals = await matches(conn, ids, s.q, s.role, per_call=MATCHES_PER_CALL)
    return [
        Hit(
            audio_file_id=k.audio_file_id,
            campaign=calls[k.audio_file_id]["campaign_name"],
            created_at=k.created_at,
            duration=round(float(calls[k.audio_file_id]["duration"]), 3),
            rank=k.rank,
            match_count=totals.get(k.audio_file_id, 0),
            matches=found.get(k.audio_file_id, []),
        )
        for k in keys
        if k.audio_file_id in calls
    ]


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
