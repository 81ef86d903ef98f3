"""The JSON bodies of the insight template routes (services/ingest/routes/insights.py), as
msgspec Structs so /openapi.json takes their schema from the types the handlers use. The
template itself is libs.llm.template.InsightTemplate (its owner's type, also the PUT body)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from libs.formats import Uuid
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
