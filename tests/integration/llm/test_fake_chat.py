"""The fake server's chat completions answer and refuse as the real API does (checked through
the real `openai` SDK, which parses the answer into its own ChatCompletion type)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.fakes.chat import ChatReply, strict_schema_problem
from tests.fakes.openai_server import FakeOpenAIServer, Fault

pytestmark = pytest.mark.integration

STRICT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "outcome": {"type": "string", "enum": ["won", "lost"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": ["string", "null"]}},
                "required": ["text"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["summary", "outcome", "items"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Summarise the call as JSON."}]


def schema_format(schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "call", "strict": strict, "schema": schema},
    }


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
async def client(server: FakeOpenAIServer) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
    yield sdk
    await sdk.close()


async def test_answer_shape(server: FakeOpenAIServer, client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,  # type: ignore[arg-type]
        response_format=schema_format(STRICT),  # type: ignore[arg-type]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    assert choice.message.content is not None
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    # With no chat_fn the answer is an instance of the schema.
    answer = json.loads(choice.message.content)
    assert answer == {
        "summary": "fake summary",
        "outcome": "won",
        "items": [{"text": "fake text"}],
    }
    # The raw body has every key of OpenAI's answer.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/chat/completions",
            json={"model": "m", "messages": ASK},
            headers={"Authorization": f"Bearer {server.api_key}"},
        ) as response,
    ):
        body = await response.json()
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert set(body["choices"][0]) >= {"index", "message", "finish_reason", "logprobs"}
    assert set(body["choices"][0]["message"]) >= {"role", "content", "refusal"}
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


async def test_scripted_refusal_and_length(server: FakeOpenAIServer, client: AsyncOpenAI) -> None:
    server.queue_replies(ChatReply.refused("No."), ChatReply.truncated('{"a": '))
    refused = await client.chat.completions.create(
        model="m",
        messages=ASK,  # type: ignore[arg-type]
    )
    assert refused.choices[0].message.refusal == "No."
    assert refused.choices[0].message.content is None
    cut = await client.chat.completions.create(
        model="m",
        messages=ASK,  # type: ignore[arg-type]
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == '{"a": '


@pytest.mark.parametrize(
    ("schema", "complaint"),
    [
        (STRICT | {"additionalProperties": True}, "'additionalProperties' is required"),
        ({k: v for k, v in STRICT.items() if k != "additionalProperties"}, "additionalProperties"),
        (STRICT | {"required": ["summary", "outcome"]}, "Missing 'items'"),
        (
            STRICT
            | {
                "properties": STRICT["properties"] | {"summary": {"type": "string", "minLength": 3}}
            },
            "'minLength' is not permitted",
        ),
        (
            STRICT
            | {
                "properties": STRICT["properties"]
                | {
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"a": {"type": "string"}}},
                    }
                }
            },
            "context=('properties', 'items', 'items')",
        ),
        ({"anyOf": [STRICT]}, 'type: "object"'),
        (STRICT | {"allOf": []}, "'allOf' is not permitted"),
    ],
)
async def test_strict_schema_refused(
    server: FakeOpenAIServer, client: AsyncOpenAI, schema: dict[str, Any], complaint: str
) -> None:
    assert strict_schema_problem(schema) is not None
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="m",
            messages=ASK,  # type: ignore[arg-type]
            response_format=schema_format(schema),  # type: ignore[arg-type]
        )
    assert refused.value.status_code == 400
    assert refused.value.param == "response_format"
    assert complaint in refused.value.message
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    # Without strict the same schema is taken.
    await client.chat.completions.create(
        model="m",
        messages=ASK,  # type: ignore[arg-type]
        response_format=schema_format(schema, strict=False),  # type: ignore[arg-type]
    )


async def test_requests_the_real_api_refuses(server: FakeOpenAIServer, client: AsyncOpenAI) -> None:
    async def refused(**kwargs: Any) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(**kwargs)
        return exc.value

    no_json = await refused(
        model="m",
        messages=[{"role": "user", "content": "Summarise the call."}],
        response_format={"type": "json_object"},
    )
    assert "must contain the word 'json'" in no_json.message
    assert (await refused(model="m", messages=[])).param == "messages"
    assert (await refused(model="", messages=ASK)).param == "model"
    bad_role = await refused(model="m", messages=[{"role": "robot", "content": "x"}])
    assert bad_role.param == "messages[0].role"
    bad_type = await refused(model="m", messages=ASK, response_format={"type": "xml"})
    assert bad_type.param == "response_format.type"
    bad_name = await refused(
        model="m",
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "a b"}},
    )
    assert bad_name.param == "response_format.json_schema.name"
    # json_object with the word JSON anywhere is fine.
    await client.chat.completions.create(
        model="m",
        messages=ASK,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
    )


async def test_server_without_structured_outputs(
    client: AsyncOpenAI, server: FakeOpenAIServer
) -> None:
    server.structured_outputs = False
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="m",
            messages=ASK,  # type: ignore[arg-type]
            response_format=schema_format(STRICT),  # type: ignore[arg-type]
        )
    assert refused.value.param == "response_format"
    assert "json_schema" in refused.value.message


async def test_faults_and_record(server: FakeOpenAIServer, client: AsyncOpenAI) -> None:
    server.fail_next(Fault.rate_limited(retry_after=3), Fault.server_error())
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    await client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    assert [r.status for r in server.chat_requests] == [429, 500, 200]
    assert server.chat_requests[-1].text == ASK[0]["content"]
    assert server.stats()["chat_requests"] == 3
