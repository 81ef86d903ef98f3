"""The JSON bodies of the category routes (issue #21; services/ingest/routes/categories.py), as
msgspec Structs like services/ingest/bodies.py, so /openapi.json takes their schema from the
types the handlers read and answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec

from libs.categories import rules
from libs.categories.apply import MAX_CALLS, Applied
from libs.categories.rules import Category
from libs.formats import DateTime, Uuid
from libs.params import encode_cursor

RULE_DOC = (
    "an object with one of said, not_said (phrases; by, first_seconds, last_seconds), metric "
    "(min, max), redacted, all, any (lists of rules), not (a rule): docs/categories.md"
)
Rule = Annotated[dict[str, Any], msgspec.Meta(description=RULE_DOC)]
# Read as any JSON value: the rule's own parser says what is wrong, and where.
AnyRule = Annotated[Any, msgspec.Meta(description=RULE_DOC, extra_json_schema={"type": "object"})]


class CategoryRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of PUT /api/categories/{name}."""

    rule: AnyRule


class CategoryBody(msgspec.Struct, kw_only=True):
    """A key's category: its name and its rule (canonical JSON: options at their default left
    out, numbers as numbers)."""

    name: Annotated[
        str, msgspec.Meta(max_length=rules.MAX_NAME_CHARS, pattern="^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    rule: Rule
    created_at: DateTime
    updated_at: DateTime


class CategoryList(msgspec.Struct, kw_only=True):
    """A key's categories, by name."""

    api_key_id: Uuid
    categories: list[CategoryBody]
    max_categories: Annotated[int, msgspec.Meta(description="categories a key may hold")]
    max_phrases: Annotated[int, msgspec.Meta(description="phrases a key's categories may hold")]


class CategoryDeleted(msgspec.Struct, kw_only=True):
    """The category and its matches on the key's calls are gone."""

    name: str
    deleted: bool = True


class CategoryApplied(msgspec.Struct, kw_only=True):
    """What POST /api/categories/{name}/apply did."""

    name: str
    since: DateTime
    evaluated: Annotated[int, msgspec.Meta(description="completed calls evaluated")]
    matched: Annotated[int, msgspec.Meta(description="of those, the calls it matches")]
    skipped: Annotated[
        int,
        msgspec.Meta(
            description="completed calls not in the search index (transcribe search reindex), "
            "or deleted meanwhile"
        ),
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description=f"set when the bound of {MAX_CALLS} calls per request was reached: "
            "POST again with cursor=<this> (and the same since) to go on with older calls"
        ),
    ] = None


def category(c: Category) -> CategoryBody:
    assert c.created_at is not None and c.updated_at is not None
    return CategoryBody(
        name=c.name,
        rule=rules.dump(c.rule),
        created_at=c.created_at.isoformat(),
        updated_at=c.updated_at.isoformat(),
    )


def listing(owner: uuid.UUID, found: list[Category]) -> CategoryList:
    return CategoryList(
        api_key_id=str(owner),
        categories=[category(c) for c in found],
        max_categories=rules.MAX_CATEGORIES_PER_KEY,
        max_phrases=rules.MAX_PHRASES_PER_KEY,
    )


def applied(name: str, since: str, a: Applied) -> CategoryApplied:
    return CategoryApplied(
        next_cursor=encode_cursor(*a.after) if a.after else None,
        name=name,
        since=since,
        evaluated=a.evaluated,
        matched=a.matched,
        skipped=a.skipped,
    )
