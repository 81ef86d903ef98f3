"""The JSON bodies of call insights (issue 21): `GET /api/media/insights/{id}` and the
`insights` / `categories` of /status metadata and the jobs list, as msgspec Structs like
services/ingest/bodies.py (so /openapi.json takes their schema from the answered types)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from libs.contracts import CategoryMatch, Insights, TokenUsage
from libs.formats import DateTime, Uuid, described

# A list, not a tuple: what /status answers converts back to the same builtins.
CategoryMatches = list[CategoryMatch]
InsightsStatus = Literal["pending", "completed", "failed", "not_configured"]


class InsightsSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A completed job's insights at a glance (/status metadata, the jobs list)."""

    status: Annotated[
        InsightsStatus,
        described(
            "pending (services/insights has not got to it yet), completed, failed (reason says "
            "why) or not_configured (no chat model, or insights off for the key)"
        ),
    ]
    reason: str | None = None
    outcome: Annotated[
        str | None, described("the outcome the chat model chose from the campaign's list")
    ] = None


class InsightsAnswer(msgspec.Struct, kw_only=True):
    """A completed job's categories (rules, always) and the chat model's insights."""

    audio_file_id: Uuid
    status: InsightsStatus
    reason: str | None
    categories: Annotated[
        CategoryMatches,
        described("the key's categories that matched, each with its evidence (redacted text)"),
    ]
    insights: Insights | None
    model: str | None
    usage: TokenUsage | None
    updated_at: DateTime | None
