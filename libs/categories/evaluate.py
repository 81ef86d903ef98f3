"""Evaluating categories on a call: pure and deterministic (the same categories and call give
the same matches, in the categories' order, with the same evidence).

Phrases: the call's utterances are normalized once (`rules.fold`) into one string, each
utterance padded with spaces between separators, so a phrase is found as `" <words> "` by
`str.find` at C speed and never across two utterances; a hit is mapped back to its utterance
by bisection. Each phrase is searched once per evaluation whatever the number of rules naming
it.

Evidence: every matching `said` rule contributes the utterances that said one of its phrases
(by the speaker and in the window asked), the first MAX_EVIDENCE_PER_RULE in time order; a
category's evidence is the union over its rules that took part in the match (an `any`'s
matching branches, every branch of an `all`), in time order, at most MAX_EVIDENCE. `not_said`,
anything under `not`, `metric` and `redacted` give none.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from functools import cached_property

from libs.categories.call import Call
from libs.categories.rules import (
    ANY,
    All,
    AnyOf,
    Category,
    Metric,
    Not,
    Redacted,
    Rule,
    Said,
    fold,
)
from libs.contracts import CategoryMatch, Evidence
from libs.search.rows import CallMetrics, conversation_metrics

MAX_EVIDENCE_PER_RULE = 10
MAX_EVIDENCE = 50

_SEP = "\x00"  # rules.fold keeps it


def evaluate(categories: Sequence[Category], call: Call) -> tuple[CategoryMatch, ...]:
    """The categories whose rule matches `call`, in the order given, with their evidence."""
    ctx = _Context(call)
    out: list[CategoryMatch] = []
    for category in categories:
        matched, found = ctx.rule(category.rule)
        if matched:
            out.append(CategoryMatch(name=category.name, matches=ctx.evidence(found)))
    return tuple(out)


class _Context:
    def __init__(self, call: Call) -> None:
        self.call = call
        self._hits: dict[str, tuple[int, ...]] = {}

    @cached_property
    def _text(self) -> tuple[str, list[int]]:
        """The normalized text of every utterance, each as `" words "`, separated by _SEP, and
        where each starts."""
        joined = _SEP.join(u.text.replace(_SEP, " ") for u in self.call.utterances)
        parts = fold(joined).split(_SEP)
        padded = [f" {p} " for p in parts]
        starts = [0, *itertools.accumulate(len(p) + 1 for p in padded)][: len(padded)]
        return _SEP.join(padded), starts

    @cached_property
    def _metrics(self) -> CallMetrics:
        return conversation_metrics(self.call.conversation, self.call.duration)

    def hits(self, pattern: str) -> tuple[int, ...]:
        """The indexes of the utterances that say `pattern` (normalized words), in order."""
        found = self._hits.get(pattern)
        if found is None:
            text, starts = self._text
            needle = f" {pattern} "
            out: list[int] = []
            at = text.find(needle)
            while at >= 0 and self.call.utterances:
                index = bisect.bisect_right(starts, at) - 1
                out.append(index)
                if index + 1 >= len(starts):
                    break
                at = text.find(needle, starts[index + 1])
            found = self._hits[pattern] = tuple(out)
        return found

    def rule(self, rule: Rule) -> tuple[bool, list[int]]:
        """Whether `rule` matches, and the utterances it found (evidence)."""
        match rule:
            case Said():
                said = self.said(rule)
                if rule.negated:
                    return not said, []
                return bool(said), said[:MAX_EVIDENCE_PER_RULE]
            case Metric():
                return self.metric(rule), []
            case Redacted():
                return self.call.redacted.get(rule.entity, 0) > 0, []
            case All():
                found: list[int] = []
                for child in rule.rules:
                    matched, more = self.rule(child)
                    if not matched:
                        return False, []
                    found += more
                return True, found
            case AnyOf():
                found = []
                any_matched = False
                for child in rule.rules:
                    matched, more = self.rule(child)
                    if matched:
                        any_matched = True
                        found += more
                return any_matched, found
            case Not():
                matched, _ = self.rule(rule.rule)
                return not matched, []

    def said(self, rule: Said) -> list[int]:
        """The utterances (indexes, in time order) that say one of the rule's phrases, by the rule's
        speaker, within its window."""
        utterances = self.call.utterances
        indexes = sorted(
            {i for p in rule.patterns for i in self.hits(p)},
            key=lambda i: (utterances[i].start, utterances[i].end, i),
        )
        if rule.by != ANY:
            role = rule.by.lower()
            indexes = [
                i for i in indexes if utterances[i].role == role or utterances[i].speaker == rule.by
            ]
        first, last = rule.first_seconds, rule.last_seconds
        if first is not None or last is not None:
            tail = self.call.duration - last if last is not None else None
            indexes = [
                i
                for i in indexes
                if (first is not None and utterances[i].start < first)
                or (tail is not None and utterances[i].end > tail)
            ]
        return indexes

    def metric(self, rule: Metric) -> bool:
        value = getattr(self._metrics, rule.name)
        if value is None:
            return False
        return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)

    def evidence(self, found: list[int]) -> tuple[Evidence, ...]:
        utterances = self.call.utterances
        ordered = sorted(set(found), key=lambda i: (utterances[i].start, utterances[i].end, i))
        return tuple(
            Evidence(
                start=utterances[i].start,
                end=utterances[i].end,
                text=utterances[i].text,
                role=utterances[i].role,
                speaker=utterances[i].speaker,
            )
            for i in ordered[:MAX_EVIDENCE]
        )
