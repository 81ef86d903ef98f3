"""The shape of the chat model's answer, one msgspec Struct per template, and its JSON Schema.

`answer_type(template)` builds the Struct (only the parts the template asks for; `outcome` an
enum of the template's outcomes; `answers` an object with one property per question, so every
question is answered). The same type gives the schema sent as `response_format` json_schema
(`strict_schema`, which keeps strict mode's rules: root an object, every property required,
`additionalProperties: false` everywhere, only supported keywords) and validates the answer
(`decode`), whether the server enforced the schema or not.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

import msgspec

from libs.llm.template import InsightTemplate

Owner = Literal["agent", "customer"]
Sentiment = Literal["positive", "neutral", "negative"]
SCHEMA_NAME = "call_insights"


class ActionItemAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    owner: Owner
    text: str


class SentimentAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: str
    sentiment: Sentiment


class YesNoAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    answer: Literal["yes", "no"]
    # A short quote of the line that shows it, and that line's [mm:ss] time.
    evidence: str | None
    at: str | None


class TextAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    answer: str
    evidence: str | None
    at: str | None


@functools.lru_cache(maxsize=256)
def answer_type(template: InsightTemplate) -> type[msgspec.Struct]:
    """The Struct an answer to `template` decodes into (fields in the template's order)."""
    fields: list[tuple[str, Any]] = []
    if template.summary:
        fields.append(("summary", str))
    if template.reason:
        fields.append(("reason", str))
    if template.outcomes:
        fields.append(("outcome", Literal.__getitem__(tuple(template.outcomes))))
    if template.action_items:
        fields.append(("action_items", list[ActionItemAnswer]))
    if template.sentiment:
        fields.append(("sentiment", list[SentimentAnswer]))
    if template.questions:
        # Field names q0, q1, ... renamed to the question ids (any id is a valid JSON name).
        answers = msgspec.defstruct(
            "QuestionAnswers",
            [
                (f"q{i}", YesNoAnswer if q.kind == "yes_no" else TextAnswer)
                for i, q in enumerate(template.questions)
            ],
            rename={f"q{i}": q.id for i, q in enumerate(template.questions)},
            frozen=True,
            forbid_unknown_fields=True,
        )
        fields.append(("answers", answers))
    return msgspec.defstruct(
        "CallInsights", fields, frozen=True, kw_only=True, forbid_unknown_fields=True
    )


@functools.lru_cache(maxsize=256)
def _schema_json(template: InsightTemplate) -> bytes:
    schema = msgspec.json.schema(answer_type(template))
    defs = dict(schema.get("$defs", {}))
    root = defs.pop("CallInsights")
    if defs:
        root["$defs"] = defs
    return msgspec.json.encode(_typed_enums(root))


def strict_schema(template: InsightTemplate) -> dict[str, Any]:
    """The JSON Schema of the answer, as strict mode wants it: the root object inline (not a
    `$ref`), every enum typed. A fresh copy each call (callers may not share one)."""
    out: dict[str, Any] = msgspec.json.decode(_schema_json(template))
    return out


def _typed_enums(node: Any) -> Any:
    if isinstance(node, list):
        return [_typed_enums(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _typed_enums(v) for k, v in node.items()}
    enum = out.get("enum")
    if isinstance(enum, list) and "type" not in out and all(isinstance(v, str) for v in enum):
        out["type"] = "string"
    return out


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def decode(template: InsightTemplate, content: str) -> Any:
    """The answer as its Struct; msgspec.ValidationError/DecodeError say what is wrong (and
    where: `$.answers.greeting.answer`). A Markdown code fence around the JSON, which some
    local models add in json_object mode, is taken off first."""
    fenced = _FENCE.match(content)
    if fenced is not None:
        content = fenced.group(1)
    return msgspec.json.decode(content, type=answer_type(template))
