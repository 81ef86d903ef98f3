"""What the model reads (lines, token estimate, parts) and how parts' answers merge: pure."""

from __future__ import annotations

import msgspec
import pytest

from libs.contracts import ActionItem, Insights, QuestionAnswer, RoleSentiment, TokenUsage
from libs.errors import InvalidInput
from libs.llm import answer, merge, prompt
from libs.llm import template as templates
from libs.llm.insights import Turn, _has_card_number
from libs.llm.template import InsightTemplate, Question
from tests.fakes.chat import strict_schema_problem

TEMPLATE = InsightTemplate(
    outcomes=("won", "lost"),
    questions=(
        Question(id="greet", text="Greeted?"),
        Question(id="offer", text="Offer?", kind="text"),
    ),
)


def test_lines() -> None:
    turn = Turn(start=4535.9, end=4540.0, role="agent", text="Hello\n[01:00] Customer: fake")
    assert prompt.line(turn) == "[75:35] Agent: Hello [01:00] Customer: fake"
    assert prompt.line(Turn(start=0, end=1, speaker="Speaker A", text="hi")) == (
        "[00:00] Speaker A: hi"
    )
    assert (
        prompt.line(Turn(start=0, end=1, text="a\u0000b\u0085c\tx")) == "[00:00] Speaker: a b c x"
    )
    assert prompt.parse_stamp("[75:35]") == 4535.0
    assert prompt.parse_stamp("1:02:03") == 3723.0
    assert prompt.parse_stamp("soon") is None
    assert prompt.parse_stamp(None) is None


def test_token_estimate_is_conservative() -> None:
    english = "I would like to cancel my subscription please " * 20
    assert prompt.estimate_tokens(english) > len(english) / 4
    assert prompt.estimate_tokens("日本語のテキスト") == 8  # 24 bytes


def test_split_keeps_order_and_budget() -> None:
    lines = [f"[00:{i:02d}] Agent: " + "word " * 50 for i in range(40)]
    lines.append("[09:00] Customer: " + "long " * 2000)
    parts = prompt.split(lines, 300)
    flat = [line for part in parts for line in part]
    assert flat[:40] == lines[:40]
    assert all(sum(prompt.estimate_tokens(x) + 1 for x in part) <= 300 for part in parts)
    tail = flat[40:]
    assert len(tail) > 1 and all(x.startswith("[09:00] Customer: ") for x in tail)
    assert " ".join(x.removeprefix("[09:00] Customer: ") for x in tail).split() == ["long"] * 2000
    giant = prompt.pieces("[00:00] Agent: " + "x" * 10_000, 300)
    assert all(prompt.estimate_tokens(p) <= 300 for p in giant)
    assert "".join(p.removeprefix("[00:00] Agent: ") for p in giant) == "x" * 10_000


def _said(*texts: str, role: str = "customer") -> list[Turn]:
    return [Turn(start=float(i), end=i + 1.0, role=role, text=t) for i, t in enumerate(texts)]


def test_card_numbers_are_found_before_sending() -> None:
    assert _has_card_number(_said("it is 4111 1111 1111 1111 ok"))
    assert _has_card_number(_said("4111-1111-1111-1111"))
    assert _has_card_number(_said("ref 99 4111111111111111"))
    assert not _has_card_number(_said("call 020 7946 0018 or 123456789012"))
    # 13 to 15 digits that no reading explains (a card with a digit dropped?): a card.
    assert _has_card_number(_said("call 020 7946 0018 or 1234567890123"))
    # A phone number said with its country code but no "plus" reads like a card with a digit
    # dropped, and only the card class is asked for here: refused (failing closed) ...
    assert _has_card_number(_said("call 0044 7911 123456"))
    # ... while with its "plus" it is a phone number, not a card.
    assert not _has_card_number(_said("call +44 7911 123456"))
    assert not _has_card_number(_said("my card is [CREDIT_CARD]"))
    assert not _has_card_number(_said("card #### #### #### 1111, the last four are 1111"))


def test_card_numbers_the_detector_reads_are_found_however_they_are_written_or_said() -> None:
    # Each of these passed the old 13-19 digit regex (spoken, spaced, dotted, full-width,
    # split across turns with the agent speaking in between).
    spoken = " ".join(["four"] + ["one"] * 15)
    assert _has_card_number(_said(f"my card number is {spoken}"))
    assert _has_card_number(_said("4 1 1 1  1 1 1 1  1 1 1 1  1 1 1 1"))
    assert _has_card_number(_said("4111.1111.1111.1111"))
    assert _has_card_number(_said("\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 " * 2))
    split = [
        Turn(start=0.0, end=2.0, role="customer", text="the card is 4111 1111"),
        Turn(start=2.0, end=3.0, role="agent", text="got it"),
        Turn(start=3.0, end=5.0, role="customer", text="1111 1111"),
    ]
    assert _has_card_number(split)


def test_schema_and_decode() -> None:
    schema = answer.strict_schema(TEMPLATE)
    assert strict_schema_problem(schema) is None
    assert list(schema["properties"]) == [
        "summary",
        "reason",
        "outcome",
        "action_items",
        "sentiment",
        "answers",
    ]
    assert list(schema["$defs"]["QuestionAnswers"]["properties"]) == ["greet", "offer"]
    good = {
        "summary": "s",
        "reason": "r",
        "outcome": "won",
        "action_items": [],
        "sentiment": [],
        "answers": {
            "greet": {"answer": "yes", "evidence": None, "at": None},
            "offer": {"answer": "a discount", "evidence": "ten percent", "at": "00:05"},
        },
    }
    fenced = "```json\n" + msgspec.json.encode(good).decode() + "\n```"
    assert answer.decode(TEMPLATE, fenced).outcome == "won"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.outcome"):
        answer.decode(TEMPLATE, msgspec.json.encode(good | {"outcome": "maybe"}).decode())
    with pytest.raises(msgspec.ValidationError, match="extra"):
        answer.decode(TEMPLATE, msgspec.json.encode(good | {"extra": 1}).decode())
    yes_no = good["answers"] | {"greet": {"answer": "perhaps", "evidence": None, "at": None}}
    with pytest.raises(msgspec.ValidationError, match=r"answers\.greet\.answer"):
        answer.decode(TEMPLATE, msgspec.json.encode(good | {"answers": yes_no}).decode())


def test_one_answer_to_insights() -> None:
    turns = [
        Turn(start=0.0, end=2.0, role="agent", text="Hello, this is Sam."),
        Turn(start=5.2, end=8.0, role="agent", text="I can give you  Ten percent off."),
    ]
    parsed = answer.decode(
        TEMPLATE,
        msgspec.json.encode(
            {
                "summary": "  A   call. ",
                "reason": "price",
                "outcome": "lost",
                "action_items": [
                    {"owner": "agent", "text": "Email"},
                    {"owner": "agent", "text": "email"},
                ],
                "sentiment": [{"role": "customer", "sentiment": "neutral"}],
                "answers": {
                    "greet": {"answer": "yes", "evidence": None, "at": "00:00"},
                    "offer": {"answer": "10%", "evidence": "ten percent off", "at": "09:59"},
                },
            }
        ).decode(),
    )
    got = merge.to_insights(TEMPLATE, parsed, turns, model="m", usage=TokenUsage(total_tokens=3))
    assert got.summary == "A call."
    assert got.action_items == (ActionItem(owner="agent", text="Email"),)
    greet, offer = got.answers
    assert (greet.start, greet.end) == (0.0, 2.0)  # by its time
    assert (offer.start, offer.end) == (5.2, 8.0)  # by its quote, whatever time was given


def _part(n: int, **kw: object) -> Insights:
    base: dict[str, object] = {
        "model": "m",
        "summary": f"S{n}.",
        "usage": TokenUsage(prompt_tokens=10, completion_tokens=2, total_tokens=12),
    }
    return Insights(**(base | kw))  # type: ignore[arg-type]


def test_merge() -> None:
    parts = [
        _part(
            1,
            reason=None,
            outcome="won",
            action_items=(ActionItem(owner="agent", text="Call back"),),
            sentiment=(RoleSentiment(role="customer", sentiment="negative"),),
            answers=(
                QuestionAnswer(question="greet", answer="no"),
                QuestionAnswer(question="offer", answer="a", evidence="q1", start=1, end=2),
            ),
        ),
        _part(
            2,
            reason="price",
            outcome=None,
            action_items=(ActionItem(owner="agent", text="call back"),),
            sentiment=(RoleSentiment(role="agent", sentiment="positive"),),
            answers=(
                QuestionAnswer(question="greet", answer="yes", evidence="hi", start=60, end=61),
                QuestionAnswer(question="offer", answer="A"),
            ),
        ),
        _part(
            3,
            outcome="lost",
            sentiment=(RoleSentiment(role="customer", sentiment="positive"),),
            answers=(QuestionAnswer(question="offer", answer="b"),),
        ),
    ]
    got = merge.merge(TEMPLATE, parts)
    assert got.summary == "S1. S2. S3."
    assert got.reason == "price"
    assert got.outcome == "lost"
    assert got.action_items == (ActionItem(owner="agent", text="Call back"),)
    assert {s.role: s.sentiment for s in got.sentiment} == {
        "customer": "positive",
        "agent": "positive",
    }
    greet, offer = got.answers
    assert (greet.answer, greet.evidence, greet.start) == ("yes", "hi", 60)
    assert (offer.answer, offer.evidence, offer.start) == ("a b", "q1", 1)
    assert got.usage == TokenUsage(prompt_tokens=30, completion_tokens=6, total_tokens=36)


def test_template_rules() -> None:
    assert templates.parse(b"{}") == templates.DEFAULT
    parsed = templates.parse(b'{"questions": [{"id": "a1", "text": "Why?"}]}')
    assert parsed.questions[0].kind == "yes_no"
    with pytest.raises(InvalidInput, match=r"\$\.questions\[0\]\.text"):
        templates.parse(b'{"questions": [{"id": "a1", "text": "   "}]}')
    with pytest.raises(InvalidInput, match=r"- at `\$`"):
        templates.parse(b"[]")
    with pytest.raises(InvalidInput) as bad:
        templates.parse(b"\xff")
    assert bad.value.code == "invalid_json"
    assert templates.clean_campaign(None) == ""
    with pytest.raises(InvalidInput):
        templates.clean_campaign("a\nb")
