"""ChatInsights against the project's OpenAI-compatible server (tests/fakes/openai_server.py):
real HTTP, the real `openai` SDK, structured outputs checked as OpenAI checks them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.contracts import Insights
from libs.llm import answer
from libs.llm import template as templates
from libs.llm.insights import (
    ChatInsights,
    InsightsFailed,
    ModelMisconfigured,
    ModelUnavailable,
    Turn,
    build_client,
)
from libs.llm.template import InsightTemplate, Question
from tests.fakes.chat import ChatReply, ChatRequest, strict_schema_problem
from tests.fakes.openai_server import FakeOpenAIServer, Fault

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
TEMPLATE = InsightTemplate(
    outcomes=("cancelled", "retained", "escalated"),
    questions=(
        Question(id="greeting", text="Did the agent greet the customer by name?", kind="yes_no"),
        Question(id="offer", text="What did the agent offer?", kind="text"),
    ),
)
TURNS = (
    Turn(start=0.0, end=4.0, role="agent", text="Good morning Mrs Jones, how can I help?"),
    Turn(start=4.5, end=9.0, role="customer", text="I want to cancel my subscription."),
    Turn(start=9.5, end=15.0, role="agent", text="I can offer you three months at half price."),
    Turn(start=65.0, end=70.0, role="customer", text="No thanks, please cancel it."),
)


def good_answer(request: ChatRequest) -> dict[str, Any]:
    return {
        "summary": "The customer cancelled despite an offer.",
        "reason": "cancel the subscription",
        "outcome": "cancelled",
        "action_items": [{"owner": "agent", "text": "Send the cancellation confirmation"}],
        "sentiment": [
            {"role": "agent", "sentiment": "positive"},
            {"role": "customer", "sentiment": "negative"},
        ],
        "answers": {
            "greeting": {"answer": "yes", "evidence": "Good morning Mrs Jones", "at": "00:00"},
            "offer": {"answer": "three months at half price", "evidence": None, "at": "00:09"},
        },
    }


class RecordedSleep:
    """Backoff waits, recorded instead of slept (the retry count and Retry-After are what a
    test checks, not the clock)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(chat_fn=good_answer) as fake:
        yield fake


def insights_for(
    server: FakeOpenAIServer, sleep: RecordedSleep | None = None, **kwargs: Any
) -> ChatInsights:
    client = build_client(server.api_key, server.base_url, 10.0)
    return ChatInsights(client, model=MODEL, sleep=sleep or RecordedSleep(), **kwargs)


async def test_structured_answer(server: FakeOpenAIServer) -> None:
    model = insights_for(server)
    got = await model.ask(TEMPLATE, TURNS, campaign="spring")
    await model.aclose()
    assert got.model == MODEL
    assert got.summary == "The customer cancelled despite an offer."
    assert got.outcome == "cancelled"
    assert [(a.owner, a.text) for a in got.action_items] == [
        ("agent", "Send the cancellation confirmation")
    ]
    assert {s.role: s.sentiment for s in got.sentiment} == {
        "agent": "positive",
        "customer": "negative",
    }
    greeting, offer = got.answers
    assert (greeting.question, greeting.answer, greeting.start, greeting.end) == (
        "greeting",
        "yes",
        0.0,
        4.0,
    )
    assert (offer.question, offer.start, offer.end) == ("offer", 9.5, 15.0)
    assert got.usage.total_tokens > 0
    assert got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens
    [request] = server.chat_requests
    assert request.status == 200
    spec = request.response_format
    assert spec["type"] == "json_schema"
    assert spec["json_schema"]["strict"] is True
    # The turns as "[mm:ss] Role: text" lines.
    assert "[00:04] Customer: I want to cancel my subscription." in request.text
    assert "[01:05] Customer: No thanks, please cancel it." in request.text


async def test_the_schema_sent_keeps_strict_mode(server: FakeOpenAIServer) -> None:
    model = insights_for(server)
    await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    schema = server.chat_requests[0].schema
    assert schema is not None
    assert strict_schema_problem(schema) is None
    outcome = schema["properties"]["outcome"]
    assert outcome["type"] == "string"
    assert sorted(outcome["enum"]) == ["cancelled", "escalated", "retained"]
    # Every template shape (parts off, no outcomes, text questions) stays strict.
    for template in (
        InsightTemplate(),
        InsightTemplate(summary=False, sentiment=False, outcomes=("a",)),
        InsightTemplate(questions=(Question(id="q", text="Why?", kind="text"),)),
    ):
        assert strict_schema_problem(answer.strict_schema(template)) is None


async def test_an_answer_outside_the_outcomes_is_repaired_once(server: FakeOpenAIServer) -> None:
    wrong = good_answer(ChatRequest("x", None)) | {"outcome": "maybe"}
    server.queue_replies(ChatReply(content=wrong))
    model = insights_for(server)
    got = await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert got.outcome == "cancelled"
    _first, repair = server.chat_requests
    assert repair.messages[-2] == {"role": "assistant", "content": json.dumps(wrong)}
    assert "outcome" in repair.messages[-1]["content"]
    assert got.usage.total_tokens > 0


async def test_json_schema_refused_falls_back_to_json_object_and_repair() -> None:
    async with FakeOpenAIServer(chat_fn=good_answer, structured_outputs=False) as server:
        server.queue_replies(ChatReply.invalid_json())
        model = insights_for(server)
        got = await model.ask(TEMPLATE, TURNS, campaign="")
        refused, fallback, repair = server.chat_requests
        assert refused.status == 400
        assert refused.response_type == "json_schema"
        assert fallback.response_type == "json_object"
        assert fallback.status == 200
        # The schema is in the instructions instead.
        assert '"outcome"' in fallback.messages[0]["content"]
        assert repair.response_type == "json_object"
        assert got.outcome == "cancelled"
        # The next call goes straight to json_object.
        await model.ask(TEMPLATE, TURNS, campaign="")
        assert server.chat_requests[3].response_type == "json_object"
        assert len(server.chat_requests) == 4
        await model.aclose()


async def test_still_invalid_after_one_repair_fails(server: FakeOpenAIServer) -> None:
    wrong = good_answer(ChatRequest("x", None)) | {"outcome": "my secret words"}
    server.queue_replies(ChatReply.invalid_json(), ChatReply(content=wrong))
    model = insights_for(server)
    with pytest.raises(InsightsFailed) as failed:
        await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert failed.value.reason == "invalid_answer"
    assert len(server.chat_requests) == 2
    # The reason says where, never what the model wrote.
    assert "$.outcome" in failed.value.detail
    assert "secret" not in failed.value.detail


async def test_refusal_fails(server: FakeOpenAIServer) -> None:
    server.queue_replies(ChatReply.refused())
    model = insights_for(server)
    with pytest.raises(InsightsFailed) as failed:
        await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert failed.value.reason == "refused"
    assert len(server.chat_requests) == 1


async def test_length_fails(server: FakeOpenAIServer) -> None:
    server.queue_replies(ChatReply.truncated())
    model = insights_for(server)
    with pytest.raises(InsightsFailed) as failed:
        await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert failed.value.reason == "truncated"
    assert len(server.chat_requests) == 1


async def test_429_with_retry_after_then_success(server: FakeOpenAIServer) -> None:
    server.fail_next(Fault.rate_limited(retry_after=7))
    sleep = RecordedSleep()
    model = insights_for(server, sleep)
    got = await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert got.outcome == "cancelled"
    assert sleep.waits == [7.0]
    assert [r.status for r in server.chat_requests] == [429, 200]


async def test_5xx_exhausted_is_model_unavailable(server: FakeOpenAIServer) -> None:
    server.fail_next(*(Fault.server_error(500) for _ in range(3)))
    sleep = RecordedSleep()
    model = insights_for(server, sleep, max_attempts=3)
    with pytest.raises(ModelUnavailable) as unavailable:
        await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert [r.status for r in server.chat_requests] == [500, 500, 500]
    assert len(sleep.waits) == 2
    assert sleep.waits[1] > sleep.waits[0]
    assert unavailable.value.retry_after is None


async def test_long_retry_after_ends_the_attempts(server: FakeOpenAIServer) -> None:
    server.fail_next(Fault.unavailable(retry_after=300))
    sleep = RecordedSleep()
    model = insights_for(server, sleep)
    with pytest.raises(ModelUnavailable) as unavailable:
        await model.ask(TEMPLATE, TURNS, campaign="")
    await model.aclose()
    assert unavailable.value.retry_after == 300.0
    assert sleep.waits == []
    assert len(server.chat_requests) == 1


async def test_a_wrong_key_is_model_unavailable_not_a_crash() -> None:
    async with FakeOpenAIServer(chat_fn=good_answer, api_key="sk-right") as server:
        client = build_client("sk-wrong", server.base_url, 10.0)
        model = ChatInsights(client, model=MODEL, sleep=RecordedSleep())
        with pytest.raises(ModelMisconfigured):  # a ModelUnavailable the consumer pauses on
            await model.ask(TEMPLATE, TURNS, campaign="")
        assert await model.check() is False  # the probe: still refused
        await model.aclose()
        assert len(server.chat_requests) == 1
        right = ChatInsights(build_client("sk-right", server.base_url, 10.0), model=MODEL)
        assert await right.check() is True
        await right.aclose()


def part_answer(request: ChatRequest) -> dict[str, Any]:
    """Each part answers from its own lines: the outcome of the part's last line."""
    text = request.messages[-1]["content"]
    last = text.strip().splitlines()[-1]
    part = re.search(r"Part (\d+) of", text)
    number = part.group(1) if part else "1"
    return {
        "summary": f"Part {number}.",
        "reason": "billing" if number == "1" else "other",
        "outcome": "retained" if "stay" in last else "cancelled",
        "action_items": [
            {"owner": "agent", "text": "Call back"},
            {"owner": "customer", "text": f"Task {number}"},
        ],
        "sentiment": [
            {"role": "customer", "sentiment": "negative" if number == "1" else "positive"}
        ],
        "answers": {
            "greeting": (
                {"answer": "yes", "evidence": "hello mrs jones", "at": None}
                if "hello mrs jones" in text.lower()
                else {"answer": "no", "evidence": None, "at": None}
            ),
            "offer": {"answer": f"offer {number}", "evidence": None, "at": None},
        },
    }


async def test_a_long_call_is_asked_in_parts_and_merged() -> None:
    turns = [
        Turn(
            start=float(i * 10),
            end=float(i * 10 + 8),
            role="agent" if i % 2 else "customer",
            text=f"sentence number {i} " + "with quite a few words in it " * 20,
        )
        for i in range(120)
    ]
    turns[1] = Turn(start=10.0, end=18.0, role="agent", text="Hello Mrs Jones, thanks for calling.")
    turns[-1] = Turn(start=1190.0, end=1198.0, role="customer", text="Fine, I will stay.")
    async with FakeOpenAIServer(chat_fn=part_answer) as server:
        model = insights_for(server, context_tokens=4000)
        got = await model.ask(TEMPLATE, turns, campaign="")
        await model.aclose()
        requests = server.chat_requests
        assert len(requests) > 2
        # Every turn was sent once, in order, and each part fits the context.
        sent = "\n".join(r.messages[-1]["content"] for r in requests)
        for i in range(2, 119):
            assert sent.count(f"sentence number {i} ") == 1
        assert all(len(r.text.encode()) < 4000 * 3 for r in requests)
    n = len(requests)
    assert got.summary == " ".join(f"Part {i}." for i in range(1, n + 1))
    assert got.reason == "billing"
    assert got.outcome == "retained"  # the last part's
    assert [a.text for a in got.action_items] == ["Call back"] + [
        f"Task {i}" for i in range(1, n + 1)
    ]
    assert [(s.role, s.sentiment) for s in got.sentiment] == [("customer", "positive")]
    greeting, offer = got.answers
    assert (greeting.answer, greeting.start, greeting.end) == ("yes", 10.0, 18.0)
    assert offer.answer == " ".join(f"offer {i}" for i in range(1, n + 1))
    # Usage is summed over the parts (the fake bills about 4 characters a token).
    assert got.usage.prompt_tokens >= sum(len(r.text) // 4 for r in requests)


CARD = "4111 1111 1111 1111"


async def test_only_redacted_text_reaches_the_model(server: FakeOpenAIServer) -> None:
    redacted = [
        Turn(start=0.0, end=5.0, role="customer", text="My card number is [CREDIT_CARD]."),
        Turn(start=5.0, end=9.0, role="agent", text="Thank you, and the expiry?"),
    ]
    model = insights_for(server)
    await model.ask(TEMPLATE, redacted, campaign="")
    # A turn that still holds a card number is never sent.
    with pytest.raises(InsightsFailed) as failed:
        await model.ask(
            TEMPLATE,
            [Turn(start=0.0, end=5.0, role="customer", text=f"It is {CARD} thanks")],
            campaign="",
        )
    await model.aclose()
    assert failed.value.reason == "unredacted_card_number"
    assert len(server.chat_requests) == 1
    received = json.dumps(server.chat_requests[0].body)
    assert "[CREDIT_CARD]" in received
    assert not re.search(r"\d(?:[ -]?\d){12,18}", received)
    assert "4111" not in received


async def test_a_card_read_aloud_or_split_between_turns_never_reaches_the_model(
    server: FakeOpenAIServer,
) -> None:
    spoken = " ".join(["four"] + ["one"] * 15)
    calls = [
        [Turn(start=0.0, end=5.0, role="customer", text=f"my card number is {spoken}")],
        [
            Turn(start=0.0, end=2.0, role="customer", text="it is 4111 1111"),
            Turn(start=2.0, end=3.0, role="agent", text="go on"),
            Turn(start=3.0, end=5.0, role="customer", text="1111 1111"),
        ],
        [Turn(start=0.0, end=5.0, role="customer", text="4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1")],
    ]
    model = insights_for(server)
    for turns in calls:
        with pytest.raises(InsightsFailed) as failed:
            await model.ask(TEMPLATE, turns, campaign="")
        assert failed.value.reason == "unredacted_card_number"
    await model.aclose()
    assert server.chat_requests == []


async def test_nothing_asked_or_said_is_nothing_sent(server: FakeOpenAIServer) -> None:
    nothing = InsightTemplate(summary=False, reason=False, action_items=False, sentiment=False)
    model = insights_for(server)
    assert await model.ask(nothing, TURNS, campaign="") == Insights(model=MODEL)
    assert await model.ask(TEMPLATE, [], campaign="") == Insights(model=MODEL)
    silent = [Turn(start=0.0, end=1.0, role="agent", text="  ")]
    assert await model.ask(TEMPLATE, silent, campaign="") == Insights(model=MODEL)
    await model.aclose()
    assert server.chat_requests == []


async def test_the_largest_template_fits_the_default_context() -> None:
    largest = InsightTemplate(
        outcomes=tuple(f"outcome {i:02d} " + "x" * 88 for i in range(templates.MAX_OUTCOMES)),
        questions=tuple(
            Question(id=f"q{i}", text="Did it? " + "y" * 490, kind="yes_no" if i % 2 else "text")
            for i in range(templates.MAX_QUESTIONS)
        ),
    )
    async with FakeOpenAIServer() as server:  # answers an instance of the schema sent
        model = insights_for(server)
        got = await model.ask(largest, TURNS, campaign="")
        await model.aclose()
    [request] = server.chat_requests
    assert request.status == 200
    assert request.schema is not None and strict_schema_problem(request.schema) is None
    assert got.outcome == largest.outcomes[0]
    assert [a.question for a in got.answers] == [f"q{i}" for i in range(templates.MAX_QUESTIONS)]
