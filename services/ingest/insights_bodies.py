"""The JSON bodies of call insights (issue 21), as msgspec Structs like
services/ingest/bodies.py, so /openapi.json takes their schema from the types the handlers use:

- the insight template routes (services/ingest/routes/insights.py); the template itself is
  libs.llm.template.InsightTemplate (its owner's type, also the PUT body);
- `GET /api/media/insights/{id}` (services/ingest/routes/call_insights.py) and the `insights` /
  `categories` of /status metadata and the jobs list."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from libs.contracts import CategoryMatch, Insights, TokenUsage
from libs.formats import DateTime, Uuid, described
from libs.llm.template import InsightTemplate


class TemplateAnswer(msgspec.Struct, kw_only=True):
    """The template a key's calls (of a campaign) are asked with, and where it comes from."""

    key_id: Uuid
    campaign: Annotated[
        str | None, msgspec.Meta(description="the campaign asked about; null: the key's")
    ]
    source: Annotated[
        Literal["campaign", "key", "default"],
        msgspec.Meta(
            description="campaign: its own template; key: the key's template; default: none "
            "stored (summary, reason, action items, sentiment)"
        ),
    ]
    insights_enabled: Annotated[
        bool, msgspec.Meta(description="false: an operator turned LLM insights off for the key")
    ]
    template: InsightTemplate


class InsightsSwitch(msgspec.Struct, kw_only=True):
    """Whether LLM insights run for a key (categories run either way)."""

    key_id: Uuid
    enabled: bool


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
