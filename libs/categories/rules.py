"""The rule language of categories: `parse(raw)` checks a decoded JSON value and returns the
typed `Rule`, `dump(rule)` its canonical JSON (what is stored and answered). Pure.

A rule is an object with exactly one of these keys (docs/categories.md has the details):

- `said` / `not_said`: phrases (a list of strings), with optional `by` (`agent`, `customer`,
  another role, a speaker label, or `any`, the default), `first_seconds` and `last_seconds`;
- `metric`: a conversation metric (`duration`, `talk_ratio`, `silence_share`,
  `interruptions`, `overlap`, `wpm`, as the search filters name them) with `min` and/or `max`;
- `redacted`: a redaction class (`credit_card`, `cvv`, ...);
- `all` / `any`: a list of rules; `not`: one rule.

Anything else raises `InvalidInput` (code `invalid_rule`) whose detail starts with the JSON path
of the bad part (`all[1].by: ...`; `rule: ...` for the whole).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from libs.errors import InvalidInput
from libs.redaction.policy import EntityClass
from libs.search.query import RANGES

# Limits (documented in docs/categories.md › Limits).
MAX_CATEGORIES_PER_KEY = 100
MAX_PHRASES_PER_KEY = 2000
MAX_RULES = 64  # rules (nodes, `all`/`any`/`not` included) in one category
MAX_DEPTH = 8  # the whole rule is depth 1
MAX_PHRASES = 200  # in one category
MAX_PHRASES_PER_RULE = 50
MAX_PHRASE_CHARS = 200
MAX_PHRASE_WORDS = 20
MAX_BY_CHARS = 64
MAX_WINDOW_SECONDS = 7 * 86400.0
MAX_RULE_BYTES = 64 * 1024  # the rule's JSON, as sent
MAX_NAME_CHARS = 64

ANY = "any"
METRICS: tuple[str, ...] = tuple(RANGES)
REDACTION_CLASSES: tuple[str, ...] = tuple(c.value for c in EntityClass)
KINDS = ("said", "not_said", "metric", "redacted", "all", "any", "not")
_OPTIONS: dict[str, frozenset[str]] = {
    "said": frozenset({"by", "first_seconds", "last_seconds"}),
    "not_said": frozenset({"by", "first_seconds", "last_seconds"}),
    "metric": frozenset({"min", "max"}),
    "redacted": frozenset(),
    "all": frozenset(),
    "any": frozenset(),
    "not": frozenset(),
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# NUL is kept: the evaluation separates utterances with it (and their texts hold none).
_APOSTROPHES = "'\u2019\u02bc`"
_UNICODE = str.maketrans({**dict.fromkeys(_APOSTROPHES), "_": " "})
_NON_WORD = re.compile(r"[^\w\x00]+")
# The same for ASCII text, in one C pass: letters lower-cased, digits kept, apostrophes
# dropped, anything else a space (runs of spaces are collapsed after).
_ASCII = str.maketrans(
    {
        chr(c): (chr(c).lower() if chr(c).isalnum() else None if chr(c) in _APOSTROPHES else " ")
        for c in range(1, 128)
    }
)
_SPACES = re.compile(" {2,}")


def fold(text: str) -> str:
    """`text` as phrases are matched: NFKC, case-folded, apostrophes dropped ("don't" is
    "dont"), every run of anything but letters, digits (and NUL) one space."""
    if text.isascii():
        return _SPACES.sub(" ", text.translate(_ASCII))
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_UNICODE)
    return _NON_WORD.sub(" ", folded)


def normalize(text: str) -> str:
    """A phrase as it is matched: `fold(text)`, trimmed."""
    return fold(text).strip()


class Said(msgspec.Struct, frozen=True, kw_only=True):
    """`said` (negated=False) or `not_said` (negated=True)."""

    phrases: tuple[str, ...]  # as given, whitespace collapsed
    patterns: tuple[str, ...]  # normalize(phrase), one per phrase
    negated: bool = False
    by: str = ANY
    first_seconds: float | None = None
    last_seconds: float | None = None


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    min: float | None = None
    max: float | None = None


class Redacted(msgspec.Struct, frozen=True, kw_only=True):
    entity: str


class All(msgspec.Struct, frozen=True, kw_only=True):
    rules: tuple[Rule, ...]


class AnyOf(msgspec.Struct, frozen=True, kw_only=True):
    rules: tuple[Rule, ...]


class Not(msgspec.Struct, frozen=True, kw_only=True):
    rule: Rule


Rule = Said | Metric | Redacted | All | AnyOf | Not


class Category(msgspec.Struct, frozen=True, kw_only=True):
    """A key's named rule (a row of media_pipeline.categories once stored)."""

    name: str
    rule: Rule
    created_at: datetime | None = None
    updated_at: datetime | None = None


def check_name(raw: object) -> str:
    """A category name: 1-64 of letters, digits, `_`, `.`, `-`, starting with a letter or digit."""
    if (
        not isinstance(raw, str)
        or len(raw) > MAX_NAME_CHARS
        or _NAME.fullmatch(raw) is None
        or not raw.isascii()
    ):
        raise InvalidInput(
            f"a category name is 1-{MAX_NAME_CHARS} letters, digits, '_', '.' or '-',"
            " starting with a letter or digit",
            code="invalid_category_name",
        )
    return raw


def parse(raw: object) -> Rule:
    """The rule `raw` (a decoded JSON value) describes; `InvalidInput` naming the bad part."""
    return _Parser().rule(raw, "", 1)


def phrase_count(rule: Rule) -> int:
    """How many phrases `rule` holds (the per-key limit counts these)."""
    match rule:
        case Said():
            return len(rule.phrases)
        case All() | AnyOf():
            return sum(phrase_count(r) for r in rule.rules)
        case Not():
            return phrase_count(rule.rule)
        case _:
            return 0


def dump(rule: Rule) -> dict[str, Any]:
    """The canonical JSON of `rule`: `parse(dump(r)) == r`; options at their default omitted."""
    match rule:
        case Said():
            out: dict[str, Any] = {"not_said" if rule.negated else "said": list(rule.phrases)}
            if rule.by != ANY:
                out["by"] = rule.by
            if rule.first_seconds is not None:
                out["first_seconds"] = rule.first_seconds
            if rule.last_seconds is not None:
                out["last_seconds"] = rule.last_seconds
            return out
        case Metric():
            out = {"metric": rule.name}
            if rule.min is not None:
                out["min"] = rule.min
            if rule.max is not None:
                out["max"] = rule.max
            return out
        case Redacted():
            return {"redacted": rule.entity}
        case All():
            return {"all": [dump(r) for r in rule.rules]}
        case AnyOf():
            return {"any": [dump(r) for r in rule.rules]}
        case Not():
            return {"not": dump(rule.rule)}


def _bad(path: str, what: str) -> InvalidInput:
    return InvalidInput(f"{path or 'rule'}: {what}", code="invalid_rule")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text_ok(value: str) -> bool:
    """No control characters (tab and newlines included) and no lone surrogates."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


@dataclass
class _Parser:
    rules: int = 0
    phrases: int = 0

    def rule(self, raw: object, path: str, depth: int) -> Rule:
        if depth > MAX_DEPTH:
            raise _bad(path, f"rules nest at most {MAX_DEPTH} deep")
        self.rules += 1
        if self.rules > MAX_RULES:
            raise _bad(path, f"a category holds at most {MAX_RULES} rules")
        if not isinstance(raw, dict):
            raise _bad(path, f"must be an object with one of {', '.join(KINDS)}")
        kinds = [k for k in raw if k in _OPTIONS]
        if len(kinds) != 1:
            found = "none" if not kinds else ", ".join(repr(k) for k in kinds)
            raise _bad(path, f"must have exactly one of {', '.join(KINDS)} (found {found})")
        kind = kinds[0]
        for key in raw:
            if key != kind and key not in _OPTIONS[kind]:
                allowed = sorted(_OPTIONS[kind])
                rest = f": {', '.join(allowed)}" if allowed else ""
                name = key if isinstance(key, str) and len(key) <= 64 and _text_ok(key) else "?"
                raise _bad(
                    _join(path, name),
                    f"unknown option of {kind!r} (allowed{rest or ': none'})",
                )
        at = _join(path, kind)
        match kind:
            case "said" | "not_said":
                return self.said(raw, path, negated=kind == "not_said")
            case "metric":
                return _metric(raw, path)
            case "redacted":
                entity = raw[kind]
                if entity not in REDACTION_CLASSES:
                    raise _bad(at, f"must be one of {', '.join(REDACTION_CLASSES)}")
                return Redacted(entity=entity)
            case "all" | "any":
                items = raw[kind]
                if not isinstance(items, list) or not items:
                    raise _bad(at, "must be a non-empty list of rules")
                rules = tuple(
                    self.rule(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(items)
                )
                return All(rules=rules) if kind == "all" else AnyOf(rules=rules)
            case _:
                return Not(rule=self.rule(raw[kind], at, depth + 1))

    def said(self, raw: dict[Any, Any], path: str, *, negated: bool) -> Said:
        at = _join(path, "not_said" if negated else "said")
        items = raw["not_said" if negated else "said"]
        if not isinstance(items, list) or not items:
            raise _bad(at, "must be a non-empty list of phrases")
        if len(items) > MAX_PHRASES_PER_RULE:
            raise _bad(at, f"at most {MAX_PHRASES_PER_RULE} phrases per rule")
        self.phrases += len(items)
        if self.phrases > MAX_PHRASES:
            raise _bad(at, f"a category holds at most {MAX_PHRASES} phrases")
        phrases: list[str] = []
        patterns: list[str] = []
        for i, item in enumerate(items):
            where = f"{at}[{i}]"
            if not isinstance(item, str):
                raise _bad(where, "must be a string")
            if len(item) > MAX_PHRASE_CHARS:
                raise _bad(where, f"at most {MAX_PHRASE_CHARS} characters")
            if not _text_ok(item):
                raise _bad(where, "must not hold control characters")
            pattern = normalize(item)
            if not pattern:
                raise _bad(where, "must hold at least one word (letters or digits)")
            if pattern.count(" ") + 1 > MAX_PHRASE_WORDS:
                raise _bad(where, f"at most {MAX_PHRASE_WORDS} words")
            phrases.append(" ".join(item.split()))
            patterns.append(pattern)
        return Said(
            phrases=tuple(phrases),
            patterns=tuple(patterns),
            negated=negated,
            by=_by(raw.get("by", ANY), _join(path, "by")),
            first_seconds=_window(raw.get("first_seconds"), _join(path, "first_seconds")),
            last_seconds=_window(raw.get("last_seconds"), _join(path, "last_seconds")),
        )


def _by(raw: object, path: str) -> str:
    if not isinstance(raw, str):
        raise _bad(path, "must be agent, customer, another role, a speaker label or any")
    by = " ".join(raw.split())
    if not by or len(by) > MAX_BY_CHARS or not _text_ok(by):
        raise _bad(
            path,
            f"must be agent, customer, another role, a speaker label or any (1-{MAX_BY_CHARS}"
            " characters, no control characters)",
        )
    return ANY if by.lower() == ANY else by


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # an integer of hundreds of digits, which JSON allows
        return None
    return value if math.isfinite(value) else None


def _window(raw: object, path: str) -> float | None:
    if raw is None:
        return None
    value = _number(raw)
    if value is None or not 0 < value <= MAX_WINDOW_SECONDS:
        raise _bad(path, f"must be a number of seconds above 0, at most {MAX_WINDOW_SECONDS:g}")
    return value


def _metric(raw: dict[Any, Any], path: str) -> Metric:
    name = raw["metric"]
    if not isinstance(name, str) or name not in RANGES:
        raise _bad(_join(path, "metric"), f"must be one of {', '.join(METRICS)}")
    _, kind, upper = RANGES[name]
    bounds: dict[str, float | None] = {}
    for side in ("min", "max"):
        value = raw.get(side)
        if value is None:
            bounds[side] = None
            continue
        number = _number(value)
        if number is None or not 0 <= number <= upper:
            raise _bad(_join(path, side), f"must be a number from 0 to {upper:g} ({kind})")
        bounds[side] = number
    low, high = bounds["min"], bounds["max"]
    if low is None and high is None:
        raise _bad(path, "a metric rule needs min and/or max")
    if low is not None and high is not None and low > high:
        raise _bad(_join(path, "min"), "must not be above max")
    return Metric(name=name, min=low, max=high)
