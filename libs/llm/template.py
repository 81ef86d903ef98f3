"""Insight templates: what the chat model is asked about a call, per key and per campaign.

Owner of `media_pipeline.insight_templates` (one row per key and campaign; campaign '' is the
key's own template) and `media_pipeline.insight_key_switches` (an operator's per-key off
switch). The answer's shape follows from the template (libs/llm/answer.py).

Limits (documented in docs/llm.md): at most MAX_OUTCOMES outcomes of MAX_OUTCOME_CHARS
characters each, MAX_QUESTIONS questions, question ids `[a-z][a-z0-9_]{0,39}` and texts of at
most MAX_QUESTION_CHARS characters, a body of at most MAX_TEMPLATE_BYTES bytes.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Annotated, Literal, TypeAlias

import asyncpg
import msgspec

from libs.errors import InvalidInput
from libs.params import check_json_keys

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_OUTCOMES = 50
MAX_OUTCOME_CHARS = 100
MAX_QUESTIONS = 30
MAX_QUESTION_CHARS = 500
MAX_CAMPAIGN_CHARS = 256
QUESTION_ID_PATTERN = "^[a-z][a-z0-9_]{0,39}$"

QuestionKind = Literal["yes_no", "text"]
Outcome = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_OUTCOME_CHARS, description="an allowed outcome"),
]


class Question(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One question of a QA scorecard; the model answers it with an evidence quote and time."""

    id: Annotated[
        str,
        msgspec.Meta(
            pattern=QUESTION_ID_PATTERN,
            description="stable id, the answer's `question` (lower case, digits, _)",
        ),
    ]
    text: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=MAX_QUESTION_CHARS, description="the question as asked"
        ),
    ]
    kind: Annotated[
        QuestionKind, msgspec.Meta(description='"yes_no" (answer yes or no) or "text"')
    ] = "yes_no"


class InsightTemplate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to ask about a call. `outcomes`: the allowed outcomes (none: no outcome asked)."""

    summary: Annotated[bool, msgspec.Meta(description="a short summary of the call")] = True
    reason: Annotated[bool, msgspec.Meta(description="why the customer called")] = True
    outcomes: Annotated[
        tuple[Outcome, ...],
        msgspec.Meta(
            max_length=MAX_OUTCOMES,
            description="the outcome is one of these (empty: no outcome asked)",
        ),
    ] = ()
    action_items: Annotated[
        bool, msgspec.Meta(description="what the agent or the customer must do next")
    ] = True
    sentiment: Annotated[
        bool, msgspec.Meta(description="positive, neutral or negative per role")
    ] = True
    questions: Annotated[
        tuple[Question, ...],
        msgspec.Meta(max_length=MAX_QUESTIONS, description="the QA scorecard"),
    ] = ()


DEFAULT = InsightTemplate()

_decoder = msgspec.json.Decoder(InsightTemplate)


def _clean(value: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


def check(template: InsightTemplate) -> InsightTemplate:
    """The rules msgspec's types cannot say: unique outcomes and ids, no control characters,
    no blank text."""
    seen: set[str] = set()
    for i, outcome in enumerate(template.outcomes):
        where = f"$.outcomes[{i}]"
        if not outcome.strip() or not _clean(outcome):
            raise InvalidInput(
                f"{where}: an outcome is text without control characters", code="invalid_template"
            )
        if outcome in seen:
            raise InvalidInput(f"{where}: {outcome!r} is listed twice", code="invalid_template")
        seen.add(outcome)
    ids: set[str] = set()
    for i, question in enumerate(template.questions):
        where = f"$.questions[{i}]"
        if question.id in ids:
            raise InvalidInput(
                f"{where}.id: {question.id!r} is used twice", code="invalid_template"
            )
        ids.add(question.id)
        if not question.text.strip() or not _clean(question.text):
            raise InvalidInput(
                f"{where}.text: the question is text without control characters",
                code="invalid_template",
            )
    return template


def parse(raw: bytes) -> InsightTemplate:
    """A template from a JSON body; InvalidInput (code invalid_template) names the bad part."""
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise InvalidInput(
            f"a template is at most {MAX_TEMPLATE_BYTES} bytes", code="invalid_template"
        )
    try:
        template = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec names the part (" - at `$.questions[0].id`") except for the root.
        message = str(exc) if " - at `" in str(exc) else f"{exc} - at `$`"
        raise InvalidInput(message, code="invalid_template") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", code="invalid_json") from exc
    check_json_keys(raw, "the template")
    return check(template)


def clean_campaign(raw: str | None) -> str:
    """'' (the key's own template) or a campaign name as jobs carry it."""
    if raw is None:
        return ""
    if len(raw) > MAX_CAMPAIGN_CHARS or not _clean(raw):
        raise InvalidInput(
            f"campaign is text of at most {MAX_CAMPAIGN_CHARS} characters", code="invalid_campaign"
        )
    return raw


# --- storage ------------------------------------------------------------------------------

GET_TEMPLATE = """
SELECT template::text FROM media_pipeline.insight_templates
WHERE api_key_id = $1 AND campaign = $2
"""
# The campaign's template, else the key's ('' sorts first only when no campaign row exists).
TEMPLATE_FOR = """
SELECT template::text FROM media_pipeline.insight_templates
WHERE api_key_id = $1 AND campaign IN ($2, '')
ORDER BY campaign = $2 DESC
LIMIT 1
"""
PUT_TEMPLATE = """
INSERT INTO media_pipeline.insight_templates (api_key_id, campaign, template)
VALUES ($1, $2, ($3::text)::jsonb)
ON CONFLICT (api_key_id, campaign) DO UPDATE
SET template = EXCLUDED.template, updated_at = now()
"""
DELETE_TEMPLATE = """
DELETE FROM media_pipeline.insight_templates WHERE api_key_id = $1 AND campaign = $2
"""
INSIGHTS_ENABLED = """
SELECT enabled FROM media_pipeline.insight_key_switches WHERE api_key_id = $1
"""
SET_ENABLED = """
INSERT INTO media_pipeline.insight_key_switches (api_key_id, enabled) VALUES ($1, $2)
ON CONFLICT (api_key_id) DO UPDATE SET enabled = EXCLUDED.enabled, changed_at = now()
"""

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


def _read(text: str) -> InsightTemplate:
    return _decoder.decode(text)


async def get(conn: Conn, key_id: uuid.UUID, campaign: str = "") -> InsightTemplate | None:
    """The template stored for exactly this key and campaign ('' = the key's), or None."""
    text = await conn.fetchval(GET_TEMPLATE, key_id, campaign)
    return None if text is None else _read(text)


async def template_for(conn: Conn, key_id: uuid.UUID, campaign: str) -> InsightTemplate:
    """What a call of `campaign` is asked: the campaign's template, else the key's, else
    DEFAULT (summary, reason, action items and sentiment; no outcomes, no questions)."""
    text = await conn.fetchval(TEMPLATE_FOR, key_id, campaign)
    return DEFAULT if text is None else _read(text)


async def put(conn: Conn, key_id: uuid.UUID, campaign: str, template: InsightTemplate) -> None:
    await conn.execute(
        PUT_TEMPLATE, key_id, campaign, msgspec.json.encode(check(template)).decode()
    )


async def delete(conn: Conn, key_id: uuid.UUID, campaign: str = "") -> bool:
    """Remove the template; False when there was none."""
    status = await conn.execute(DELETE_TEMPLATE, key_id, campaign)
    return str(status).endswith(" 1")


async def insights_enabled(conn: Conn, key_id: uuid.UUID) -> bool:
    """False only when an operator turned LLM insights off for the key (categories still run)."""
    enabled = await conn.fetchval(INSIGHTS_ENABLED, key_id)
    return enabled is not False


async def set_enabled(conn: Conn, key_id: uuid.UUID, enabled: bool) -> None:
    """Operator only: turn LLM insights on or off for a key (nothing of its calls is sent to
    the chat model while off)."""
    await conn.execute(SET_ENABLED, key_id, enabled)
