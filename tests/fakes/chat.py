"""`POST /v1/chat/completions` for the fake OpenAI server (tests/fakes/openai_server.py).

What the real API checks, and answers, as far as a client of structured outputs can tell:

- the body is a JSON object; `model` is required; `messages` a non-empty array of objects
  with a known `role` and a `content` that is text (or an array of text parts);
- `response_format.type` is `text`, `json_object` or `json_schema`; `json_object` needs the
  word "JSON" somewhere in the messages; `json_schema` needs `json_schema.name`
  (`[a-zA-Z0-9_-]{1,64}`) and a `schema` object, and with `strict: true` the schema must keep
  strict mode's rules (`strict_schema_problem`): the root an object, every object with
  `additionalProperties: false` and every property in `required`, supported keywords only,
  `$ref` to `#` or `#/$defs/...` only, at most 10 levels of nesting, 5000 properties and 1000
  enum values;
- the answer is `{id, object: "chat.completion", created, model, choices: [{index, message:
  {role, content, refusal, annotations}, finish_reason, logprobs}], usage, system_fingerprint,
  service_tier}` (openai-python's `ChatCompletion`).

Errors carry OpenAI's envelope with `param` and `code`, so the SDK's exceptions see them.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
RESPONSE_TYPES = ("text", "json_object", "json_schema")
SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_NESTING = 10
MAX_PROPERTIES = 5000
MAX_ENUM_VALUES = 1000

# Keywords strict mode accepts, by the node's type (OpenAI's "Supported schemas").
_COMMON = frozenset({"type", "description", "title", "enum", "const", "anyOf", "$ref", "$defs"})
_BY_TYPE: Mapping[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"pattern", "format"}),
    "number": frozenset(
        {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
    ),
    "integer": frozenset(
        {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
    ),
    "boolean": frozenset(),
    "null": frozenset(),
}
_ALL_KEYWORDS = _COMMON.union(*_BY_TYPE.values())


class StrictSchemaError(ValueError):
    """Where (a context tuple, as OpenAI prints it) and what breaks strict mode."""

    def __init__(self, context: tuple[str, ...], problem: str) -> None:
        super().__init__(f"In context={context!r}, {problem}")


def strict_schema_problem(schema: Any) -> str | None:
    """What OpenAI would say about `schema` under `strict: true`, or None when it is fine."""
    try:
        _check_strict(schema)
    except StrictSchemaError as exc:
        return str(exc)
    return None


def _check_strict(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise StrictSchemaError((), "schema must be a JSON Schema of 'type: \"object\"'")
    if schema.get("type") != "object" or "anyOf" in schema:
        raise StrictSchemaError(
            (), "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'."
        )
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        raise StrictSchemaError(("$defs",), "'$defs' must be an object.")
    counts = {"properties": 0, "enum": 0}
    _check_node(schema, (), defs, 1, counts)
    for name, sub in defs.items():
        _check_node(sub, ("$defs", name), defs, 1, counts)
    if counts["properties"] > MAX_PROPERTIES:
        raise StrictSchemaError((), f"a schema may have at most {MAX_PROPERTIES} properties.")
    if counts["enum"] > MAX_ENUM_VALUES:
        raise StrictSchemaError((), f"a schema may have at most {MAX_ENUM_VALUES} enum values.")


def _types(node: Mapping[str, Any]) -> list[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return list(declared)
    return []


def _check_node(
    node: Any, ctx: tuple[str, ...], defs: Mapping[str, Any], depth: int, counts: dict[str, int]
) -> None:
    if not isinstance(node, dict):
        raise StrictSchemaError(ctx, "a schema must be an object.")
    if depth > MAX_NESTING:
        raise StrictSchemaError(ctx, f"schemas may be nested at most {MAX_NESTING} levels deep.")
    for keyword in node:
        if keyword not in _ALL_KEYWORDS:
            raise StrictSchemaError(ctx, f"'{keyword}' is not permitted.")
    types = _types(node)
    if "type" in node and not types:
        raise StrictSchemaError(ctx, "'type' must be a string or an array of strings.")
    for t in types:
        if t not in _BY_TYPE:
            raise StrictSchemaError(ctx, f"type '{t}' is not supported.")
    allowed = _COMMON.union(*(_BY_TYPE[t] for t in types)) if types else _ALL_KEYWORDS
    for keyword in node:
        if keyword not in allowed:
            raise StrictSchemaError(ctx, f"'{keyword}' is not permitted for type {types}.")
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not (
            ref == "#" or (ref.startswith("#/$defs/") and ref[len("#/$defs/") :] in defs)
        ):
            raise StrictSchemaError(ctx, f"reference {ref!r} can't be resolved.")
    if "enum" in node:
        values = node["enum"]
        if not isinstance(values, list) or not values:
            raise StrictSchemaError(ctx, "'enum' must be a non-empty array.")
        counts["enum"] += len(values)
    if "anyOf" in node:
        options = node["anyOf"]
        if not isinstance(options, list) or not options:
            raise StrictSchemaError(ctx, "'anyOf' must be a non-empty array.")
        for i, option in enumerate(options):
            _check_node(option, (*ctx, "anyOf", str(i)), defs, depth, counts)
    if "object" in types:
        _check_object(node, ctx, defs, depth, counts)
    if "array" in types:
        items = node.get("items")
        if items is None:
            raise StrictSchemaError(ctx, "'items' is required for arrays.")
        _check_node(items, (*ctx, "items"), defs, depth + 1, counts)


def _check_object(
    node: Mapping[str, Any],
    ctx: tuple[str, ...],
    defs: Mapping[str, Any],
    depth: int,
    counts: dict[str, int],
) -> None:
    if node.get("additionalProperties") is not False:
        raise StrictSchemaError(
            ctx, "'additionalProperties' is required to be supplied and to be false."
        )
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise StrictSchemaError(ctx, "'properties' must be an object.")
    required = node.get("required", [])
    if not isinstance(required, list):
        raise StrictSchemaError(ctx, "'required' must be an array.")
    missing = [name for name in properties if name not in required]
    if missing:
        raise StrictSchemaError(
            ctx,
            "'required' is required to be supplied and to be an array including every key in"
            f" properties. Missing '{missing[0]}'.",
        )
    extra = [name for name in required if name not in properties]
    if extra:
        raise StrictSchemaError(ctx, f"'required' names '{extra[0]}', which is not a property.")
    counts["properties"] += len(properties)
    for name, sub in properties.items():
        _check_node(sub, (*ctx, "properties", name), defs, depth + 1, counts)


def example(schema: Mapping[str, Any]) -> Any:
    """A deterministic instance of `schema` (first enum value, "fake ..." strings, one item
    per array, null where null is allowed): a valid structured answer by default."""
    defs = schema.get("$defs", {})
    return _example(schema, defs, "answer", 0)


def _example(node: Mapping[str, Any], defs: Mapping[str, Any], name: str, depth: int) -> Any:
    if depth > MAX_NESTING:
        return None
    if "$ref" in node:
        ref = node["$ref"]
        target = defs.get(ref.rpartition("/")[2], {}) if ref != "#" else {}
        return _example(target, defs, name, depth + 1)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        return _example(options[0], defs, name, depth + 1) if options else None
    types = [t for t in _types(node) if t != "null"]
    kind = types[0] if types else ("null" if _types(node) else "object")
    if kind == "object":
        properties = node.get("properties", {})
        return {k: _example(v, defs, k, depth + 1) for k, v in properties.items()}
    if kind == "array":
        return [_example(node.get("items", {}), defs, name, depth + 1)]
    if kind == "string":
        return f"fake {name}"
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return False
    return None


@dataclass(frozen=True, kw_only=True)
class ChatReply:
    """One scripted answer, consumed by the next chat completion that passes validation.

    `content`: the assistant's text (a dict or list is sent as JSON); None with `refusal` set
    is a refusal, as OpenAI answers one under structured outputs."""

    content: str | dict[str, Any] | list[Any] | None = None
    refusal: str | None = None
    finish_reason: str = "stop"

    @classmethod
    def refused(cls, text: str = "I'm sorry, I cannot assist with that request.") -> ChatReply:
        return cls(content=None, refusal=text)

    @classmethod
    def truncated(cls, content: str = '{"summary": "The customer called abou') -> ChatReply:
        """The answer ran into max_tokens / the context: cut off, finish_reason "length"."""
        return cls(content=content, finish_reason="length")

    @classmethod
    def invalid_json(cls, content: str = "Sure! Here is the JSON: {summary: oops") -> ChatReply:
        return cls(content=content)

    def text(self) -> str | None:
        if self.content is None or isinstance(self.content, str):
            return self.content
        return json.dumps(self.content)


@dataclass
class ChatRequest:
    """What one chat completion request carried (the parsed JSON body)."""

    request_id: str
    authorization: str | None
    body: Any = None
    status: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def _get(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    @property
    def model(self) -> str | None:
        value = self._get("model")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        value = self._get("messages")
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []

    @property
    def response_format(self) -> dict[str, Any]:
        value = self._get("response_format")
        return value if isinstance(value, dict) else {"type": "text"}

    @property
    def response_type(self) -> str:
        return str(self.response_format.get("type", "text"))

    @property
    def schema(self) -> dict[str, Any] | None:
        spec = self.response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else None

    def texts(self) -> Iterator[str]:
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield part["text"]

    @property
    def text(self) -> str:
        """Every message's text, one after the other: what reached the model."""
        return "\n".join(self.texts())


# An answer from the request: the content (str, or a dict/list sent as JSON) or a ChatReply.
ChatFn = Callable[[ChatRequest], "str | dict[str, Any] | list[Any] | ChatReply"]


class ChatRefused(Exception):
    """A request the real API refuses: the status and OpenAI's error fields."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def validate(
    request: ChatRequest, *, models: frozenset[str] | None, structured_outputs: bool
) -> None:
    """Raise ChatRefused where the real API answers 4xx."""
    body = request.body
    if not isinstance(body, dict):
        raise ChatRefused(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you"
            " aren't using your HTTP library correctly. The OpenAI API expects a JSON payload,"
            " but what was sent was not valid JSON.",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ChatRefused(
            400, "you must provide a model parameter", param="model", code="missing_required"
        )
    if models is not None and model not in models:
        raise ChatRefused(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    _validate_messages(body.get("messages"))
    _validate_response_format(request, structured_outputs)


def _validate_messages(messages: Any) -> None:
    if messages is None:
        raise ChatRefused(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise ChatRefused(
            400,
            f"Invalid type for 'messages': expected an array, but got {type(messages).__name__}"
            " instead.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        raise ChatRefused(400, "[] is too short - 'messages'", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ChatRefused(
                400,
                f"Invalid type for '{where}': expected an object.",
                param=where,
                code="invalid_type",
            )
        role = message.get("role")
        if role not in ROLES:
            raise ChatRefused(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant',"
                " 'user', 'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if content is None and role != "assistant":
            raise ChatRefused(
                400,
                f"Missing required parameter: '{where}.content'.",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
        if content is not None and not _text_content(content):
            raise ChatRefused(
                400,
                f"Invalid type for '{where}.content': expected one of a string or array of"
                " objects.",
                param=f"{where}.content",
                code="invalid_type",
            )


def _text_content(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    )


def _validate_response_format(request: ChatRequest, structured_outputs: bool) -> None:
    body = request.body
    if "response_format" not in body or body["response_format"] is None:
        return
    spec = body["response_format"]
    if not isinstance(spec, dict):
        raise ChatRefused(
            400,
            "Invalid type for 'response_format': expected an object.",
            param="response_format",
            code="invalid_type",
        )
    kind = spec.get("type")
    if kind not in RESPONSE_TYPES:
        raise ChatRefused(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and"
            " 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "json_object" and "json" not in request.text.lower():
        raise ChatRefused(
            400,
            "'messages' must contain the word 'json' in some form, to use 'response_format'"
            " of type 'json_object'.",
            param="messages",
        )
    if kind != "json_schema":
        return
    if not structured_outputs:
        raise ChatRefused(
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with"
            " this model. Learn more about supported models at the Structured Outputs guide:"
            " https://platform.openai.com/docs/guides/structured-outputs",
            param="response_format",
        )
    json_schema = spec.get("json_schema")
    if not isinstance(json_schema, dict):
        raise ChatRefused(
            400,
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )
    name = json_schema.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
        raise ChatRefused(
            400,
            f"Invalid 'response_format.json_schema.name': string does not match pattern."
            f" Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$', got {name!r}.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = json_schema.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ChatRefused(
            400,
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    if json_schema.get("strict") is True:
        problem = strict_schema_problem(schema)
        if problem is not None:
            raise ChatRefused(
                400,
                f"Invalid schema for response_format '{name}': {problem}",
                param="response_format",
                code="invalid_json_schema",
            )


def estimate_tokens(text: str) -> int:
    """What the fake bills: about 4 characters a token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def completion(request: ChatRequest, reply: ChatReply) -> dict[str, Any]:
    """The `chat.completion` object answering `request` with `reply`."""
    content = reply.text()
    model = request.model or ""
    prompt_tokens = estimate_tokens(request.text)
    completion_tokens = estimate_tokens(content or reply.refusal or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": reply.refusal,
                    "annotations": [],
                },
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def default_reply(request: ChatRequest, chat_fn: ChatFn | None) -> ChatReply:
    """The answer without a scripted one: `chat_fn`'s, else an instance of the requested
    schema (json_schema), else a small JSON object (json_object), else plain text."""
    if chat_fn is not None:
        answer = chat_fn(request)
        return answer if isinstance(answer, ChatReply) else ChatReply(content=answer)
    schema = request.schema
    if request.response_type == "json_schema" and schema is not None:
        return ChatReply(content=example(schema))
    if request.response_type == "json_object":
        return ChatReply(content={"answer": "fake"})
    return ChatReply(content="fake answer")
