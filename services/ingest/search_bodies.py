"""The JSON bodies of the search routes (GET /api/media/search, GET /api/media/{id}/search),
as msgspec Structs like services/ingest/bodies.py, so /openapi.json takes their schema from
the types the handlers answer with."""

from __future__ import annotations

from typing import Annotated

import msgspec

from libs.formats import DateTime, Uuid
from libs.search import query

# Pairs as two-item arrays (OpenAPI 3.0 has no tuples).
Range = Annotated[
    list[int],
    msgspec.Meta(
        min_length=2,
        max_length=2,
        description="[from, to): character offsets (Unicode code points) into text",
    ),
]
Times = Annotated[
    list[float], msgspec.Meta(min_length=2, max_length=2, description="[start, end] in seconds")
]


class SearchMatch(msgspec.Struct, kw_only=True):
    """One matching utterance (a segment where the transcript has no utterances)."""

    start: Annotated[float, msgspec.Meta(description="the utterance's start (seconds)")]
    end: float
    role: Annotated[str | None, msgspec.Meta(description="agent, customer, ... if known")]
    speaker: Annotated[str | None, msgspec.Meta(description='e.g. "Channel 1", "Speaker A"')]
    text: Annotated[str, msgspec.Meta(description="the utterance as indexed (redacted)")]
    highlights: Annotated[
        list[Range], msgspec.Meta(description="the words that match, never markup")
    ]


class SearchHit(msgspec.Struct, kw_only=True):
    audio_file_id: Uuid
    campaign: str
    created_at: DateTime
    duration: Annotated[float, msgspec.Meta(description="seconds")]
    rank: Annotated[float, msgspec.Meta(description="relevance (0 without q)")]
    match_count: Annotated[int, msgspec.Meta(description="matching utterances in the call")]
    matches: Annotated[
        list[SearchMatch],
        msgspec.Meta(
            description=f"the first {query.MATCHES_PER_CALL} matching utterances in time order "
            "(none without q)"
        ),
    ]


class SearchPage(msgspec.Struct):
    """Calls by relevance, then newest; next_cursor pages on (null: the last page)."""

    hits: list[SearchHit]
    next_cursor: str | None


class CallMatch(SearchMatch, kw_only=True):
    times: Annotated[
        list[Times],
        msgspec.Meta(
            description="for each highlight, the start and end of its words (the utterance's "
            "times where the transcript has no word timings)"
        ),
    ]


class CallSearch(msgspec.Struct):
    """Every match within one call, in time order, with the times a player can jump to."""

    audio_file_id: Uuid
    matches: list[CallMatch]


def _match(m: query.Match) -> SearchMatch:
    return SearchMatch(
        start=m.start,
        end=m.end,
        role=m.role,
        speaker=m.speaker,
        text=m.text,
        highlights=[list(h) for h in m.highlights],
    )


def page(p: query.Page) -> SearchPage:
    return SearchPage(
        hits=[
            SearchHit(
                audio_file_id=str(h.audio_file_id),
                campaign=h.campaign,
                created_at=h.created_at.isoformat(),
                duration=h.duration,
                rank=h.rank,
                match_count=h.match_count,
                matches=[_match(m) for m in h.matches],
            )
            for h in p.hits
        ],
        next_cursor=p.next_cursor,
    )


def call(audio_file_id: str, found: list[query.Match]) -> CallSearch:
    return CallSearch(
        audio_file_id=audio_file_id,
        matches=[
            CallMatch(
                start=m.start,
                end=m.end,
                role=m.role,
                speaker=m.speaker,
                text=m.text,
                highlights=[list(h) for h in m.highlights],
                times=[list(t) for t in m.times],
            )
            for m in found
        ],
    )
