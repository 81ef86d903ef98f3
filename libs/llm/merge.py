"""From the model's answers to `libs.contracts.Insights`: one part's answer (`to_insights`),
and the parts of a long call merged into one (`merge`).

Merging, without asking the model again (no extra request, nothing more sent, deterministic):
- summary: the parts' summaries in order, joined by a space;
- reason: the first part's that gives one (why someone called is said at the start);
- outcome: the last part's (how the call ended);
- action items: all parts', in order, without repeats (same owner and text, ignoring case);
- sentiment: per role, the last part's where that role speaks (how each left the call);
- answers, per question: yes/no is "yes" if any part shows it (with that part's evidence),
  else the first part's "no"; text answers are joined (without repeats), the evidence the
  first part's that has one;
- token usage: summed.
Evidence times are the turns' own (absolute) times, so they survive the merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libs.contracts import ActionItem, Insights, QuestionAnswer, RoleSentiment, TokenUsage
from libs.llm import prompt
from libs.llm.template import InsightTemplate

MAX_EVIDENCE_CHARS = 500
MAX_ROLE_CHARS = 64


def _text(value: str | None, limit: int | None = None) -> str | None:
    if value is None:
        return None
    cleaned = " ".join(value.split())
    if limit is not None:
        cleaned = cleaned[:limit]
    return cleaned or None


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def _turn_for(
    turns: Sequence[prompt.TimedText], texts: list[str], evidence: str | None, at: str | None
) -> Any | None:
    """The turn the evidence comes from: the one whose text (`texts`: normalised) holds the
    quote, else the one at `at` (mm:ss), else the last one starting before it."""
    if evidence:
        needle = _normalised(evidence).strip("\"'. ")
        if needle:
            for turn, text in zip(turns, texts, strict=True):
                if needle in text:
                    return turn
    seconds = prompt.parse_stamp(at)
    if seconds is None:
        return None
    before = [t for t in turns if int(t.start) <= seconds]
    exact = [t for t in before if int(t.start) == int(seconds)]
    if exact:
        return exact[0]
    return before[-1] if before else None


def to_insights(
    template: InsightTemplate,
    answer: Any,
    turns: Sequence[prompt.TimedText],
    *,
    model: str,
    usage: TokenUsage,
) -> Insights:
    """One answer (a `answer.answer_type(template)` instance) about `turns`."""
    answers: list[QuestionAnswer] = []
    given = getattr(answer, "answers", None)
    texts = [_normalised(t.text) for t in turns] if template.questions else []
    for i, question in enumerate(template.questions):
        reply = getattr(given, f"q{i}", None)
        if reply is None:
            continue
        evidence = _text(reply.evidence, MAX_EVIDENCE_CHARS)
        turn = _turn_for(turns, texts, evidence, reply.at)
        answers.append(
            QuestionAnswer(
                question=question.id,
                answer=_text(reply.answer) or "",
                evidence=evidence,
                start=turn.start if turn is not None else None,
                end=getattr(turn, "end", None) if turn is not None else None,
            )
        )
    return Insights(
        model=model,
        summary=_text(getattr(answer, "summary", None)),
        reason=_text(getattr(answer, "reason", None)),
        outcome=getattr(answer, "outcome", None),
        action_items=_unique_items(
            ActionItem(owner=a.owner, text=t)
            for a in getattr(answer, "action_items", ())
            if (t := _text(a.text)) is not None
        ),
        sentiment=tuple(
            RoleSentiment(role=role, sentiment=s.sentiment)
            for s in getattr(answer, "sentiment", ())
            if (role := _text(s.role, MAX_ROLE_CHARS)) is not None
        ),
        answers=tuple(answers),
        usage=usage,
    )


def _unique_items(items: Any) -> tuple[ActionItem, ...]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        key = (item.owner, item.text.casefold())
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out)


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
    )


def merge(template: InsightTemplate, parts: Sequence[Insights]) -> Insights:
    """One Insights from the parts of a call, in call order (see the module's rules)."""
    if len(parts) == 1:
        return parts[0]
    usage = TokenUsage()
    for p in parts:
        usage = add_usage(usage, p.usage)
    summaries = [p.summary for p in parts if p.summary]
    sentiment: dict[str, RoleSentiment] = {}
    for p in parts:
        for s in p.sentiment:
            sentiment[s.role] = s
    outcomes = [p.outcome for p in parts if p.outcome is not None]
    return Insights(
        model=parts[-1].model,
        summary=" ".join(summaries) if summaries else None,
        reason=next((p.reason for p in parts if p.reason), None),
        outcome=outcomes[-1] if outcomes else None,
        action_items=_unique_items(a for p in parts for a in p.action_items),
        sentiment=tuple(sentiment.values()),
        answers=_merge_answers(template, parts),
        usage=usage,
    )


def _merge_answers(
    template: InsightTemplate, parts: Sequence[Insights]
) -> tuple[QuestionAnswer, ...]:
    out: list[QuestionAnswer] = []
    for question in template.questions:
        given = [a for p in parts for a in p.answers if a.question == question.id]
        if not given:
            continue
        if question.kind == "yes_no":
            out.append(next((a for a in given if a.answer == "yes"), given[0]))
            continue
        texts: list[str] = []
        for a in given:
            if a.answer and a.answer.casefold() not in {t.casefold() for t in texts}:
                texts.append(a.answer)
        first = next((a for a in given if a.evidence), given[0])
        out.append(
            QuestionAnswer(
                question=question.id,
                answer=" ".join(texts),
                evidence=first.evidence,
                start=first.start,
                end=first.end,
            )
        )
    return tuple(out)
