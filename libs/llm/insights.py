"""Call insights from any OpenAI-compatible chat model (OpenAI, vLLM, Ollama, llama.cpp, ...).

`ChatInsights.ask(template, turns, campaign=...)` renders the (redacted) turns as lines
`[mm:ss] Agent: text`, asks `chat.completions.create` with `response_format` json_schema,
`strict: true` (the schema from the template: libs/llm/answer.py) and validates the answer with
msgspec. A server that refuses json_schema is asked with json_object and the schema in the
instructions instead (remembered for the process). An answer that does not validate gets ONE
repair request (the answer and what is wrong with it); a call longer than the context
(INSIGHTS_CONTEXT_TOKENS) is asked in parts whose answers are merged (libs/llm/merge.py).

Failures:
- `InsightsFailed(reason)`, permanent for this call: `refused` (the model's refusal or a
  content filter), `truncated` (finish_reason length), `invalid_answer` (still invalid after the
  repair), `rejected` (the server refused the request as malformed, a 4xx other than the
  ones below), `unredacted_card_number` (the redaction detector finds a card number in the turns,
  written or spoken, or cannot finish: nothing is
  sent), `template_too_large` (the template leaves no room for the call in the context).
- `ModelUnavailable(retry_after)`, worth retrying later: 429, 5xx, timeouts and connection
  errors after INSIGHTS_MAX_ATTEMPTS attempts with backoff (Retry-After honoured; one longer
  than MAX_RETRY_WAIT ends the attempts at once), and 401/403/404 (a key or model name to fix).

Nothing of the call's text is ever logged: only sizes, counts, statuses and reasons.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import openai
import structlog
from openai import AsyncOpenAI

from libs.contracts import Insights, TokenUsage
from libs.llm import answer, merge, prompt
from libs.llm.template import InsightTemplate
from libs.redaction import EntityClass, RedactionTimeout, detect

if TYPE_CHECKING:
    from libs.settings import Settings

log = structlog.get_logger(__name__)

# Backoff between attempts without Retry-After: 1 s, 2 s, 4 s, ... at most this, ±20%.
MAX_BACKOFF = 30.0
# A Retry-After longer than this ends the attempts: the caller retries later (its consumer
# naks with that delay) instead of holding the message.
MAX_RETRY_WAIT = 60.0
CONNECT_TIMEOUT = 10.0
# The SDK refuses to build a client without a key; self-hosted servers usually ignore it.
PLACEHOLDER_API_KEY = "not-needed"


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One utterance of the call as the model sees it. `text` is REDACTED text only."""

    start: float
    end: float
    role: str | None = None
    speaker: str | None = None
    text: str


class InsightsModel(Protocol):
    async def ask(
        self, template: InsightTemplate, turns: Sequence[Turn], *, campaign: str
    ) -> Insights: ...

    async def check(self) -> bool:
        """Whether the server takes the key now (after ModelMisconfigured: may asking resume?)."""
        ...


class InsightsFailed(Exception):
    """The model cannot give insights for this call (asking again will not help)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ModelUnavailable(Exception):
    """The model server is unreachable, overloaded or misconfigured: retry later
    (`retry_after` seconds when the server said)."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class ModelMisconfigured(ModelUnavailable):
    """The server refused the key or does not know the model (401/403/404): no call can get
    insights until an operator fixes INSIGHTS_API_KEY or INSIGHTS_MODEL, so the consumer pauses
    (probing with `InsightsModel.check`) rather than spend every call's deliveries."""


class _SchemaRefused(Exception):
    """The server does not take response_format json_schema."""


Sleep = Callable[[float], Awaitable[None]]


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    when = email.utils.parsedate_to_datetime(raw) if raw else None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _refuses_json_schema(exc: openai.APIStatusError) -> bool:
    """A 400/422 about response_format: the server has no (or no strict) structured outputs."""
    param = getattr(exc, "param", None) or ""
    message = str(getattr(exc, "message", "")).lower()
    return (
        str(param).startswith("response_format")
        or "json_schema" in message
        or "response_format" in message
    )


class _Message(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class _Completion(msgspec.Struct):
    """The parts of a `chat.completion` read here; lenient, since compatible servers omit
    optional fields. Read with msgspec from the raw body (the SDK's pydantic models cost
    more than the rest of a call together: bench/insights_bench.py)."""

    choices: list[_Choice] = []
    usage: _Usage | None = None


_completion_decoder = msgspec.json.Decoder(_Completion)


def _usage(completion: _Completion) -> TokenUsage:
    usage = completion.usage
    if usage is None:
        return TokenUsage()
    prompt_tokens = usage.prompt_tokens or 0
    completion_tokens = usage.completion_tokens or 0
    return TokenUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=usage.total_tokens or prompt_tokens + completion_tokens,
    )


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _quiet(problem: str) -> str:
    """What is wrong with an answer, without the values the model wrote (msgspec quotes an
    invalid enum value: it could echo the call): kept for logs and failure reasons."""
    return _QUOTED.sub("'…'", problem)[:200]


# How long the card check may take before the call is refused (fail closed).
CARD_CHECK_SECONDS = 60.0


def _has_card_number(turns: Sequence[Turn], *, deadline: float | None = None) -> bool:
    """Whether the turns say a card number, as libs.redaction's detector reads one: written
    in any spacing or script, or spoken ("four one one one ..."), across one speaker's turns
    (the other party may speak inside it). Placeholders of an earlier redaction do not count.
    Raises RedactionTimeout past `deadline`."""
    cards = {EntityClass.CREDIT_CARD}
    by_speaker: dict[str | None, list[str]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker or t.role, []).append(t.text)
    texts = ["\n".join(t.text for t in turns), *(" ".join(v) for v in by_speaker.values())]
    return any(f.digits for text in texts for f in detect(text, cards, deadline=deadline))


async def _check_for_cards(turns: Sequence[Turn]) -> bool:
    """`_has_card_number` off the event loop; True (refuse) when it cannot finish in time."""
    deadline = time.monotonic() + CARD_CHECK_SECONDS
    try:
        return await asyncio.to_thread(_has_card_number, turns, deadline=deadline)
    except RedactionTimeout:
        return True


class ChatInsights:
    """`InsightsModel` over `chat.completions.create` (see the module's docstring)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        model: str,
        context_tokens: int = 16000,
        max_attempts: int = 4,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if client.max_retries != 0:
            # Our own retries honour Retry-After and end in ModelUnavailable.
            raise ValueError("ChatInsights needs a client built with max_retries=0")
        self._client = client
        self.model = model
        self.context_tokens = context_tokens
        self.max_attempts = max_attempts
        self._sleep = sleep
        # False once the server refused json_schema: json_object from then on.
        self.structured_outputs = True

    async def aclose(self) -> None:
        await self._client.close()

    async def check(self) -> bool:
        """One cheap authenticated request (GET /v1/models): False while the server refuses the
        key or cannot be reached."""
        try:
            await self._client.models.list()
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            log.warning("insights_model_check_failed", model=self.model, error=type(exc).__name__)
            return False
        return True

    async def ask(
        self, template: InsightTemplate, turns: Sequence[Turn], *, campaign: str
    ) -> Insights:
        started = time.perf_counter()
        bound = log.bind(model=self.model, turns=len(turns))
        lines = [prompt.line(t) for t in turns]
        if await _check_for_cards(turns):
            bound.error("insights_refused_unredacted", reason="unredacted_card_number")
            raise InsightsFailed(
                "unredacted_card_number", "a turn holds what looks like a card number"
            )
        if not answer.answer_type(template).__struct_fields__ or not any(
            t.text.strip() for t in turns
        ):
            # Nothing asked, or nothing said: nothing to send.
            return Insights(model=self.model)
        parts = self._parts(template, turns, lines)
        results: list[Insights] = []
        for index, (part_turns, part_lines) in enumerate(parts, start=1):
            parsed, usage = await self._ask_part(template, part_lines, index, len(parts))
            results.append(
                merge.to_insights(template, parsed, part_turns, model=self.model, usage=usage)
            )
        insights = merge.merge(template, results)
        bound.info(
            "insights_answered",
            parts=len(parts),
            structured=self.structured_outputs,
            prompt_tokens=insights.usage.prompt_tokens,
            completion_tokens=insights.usage.completion_tokens,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return insights

    def _parts(
        self, template: InsightTemplate, turns: Sequence[Turn], lines: Sequence[str]
    ) -> list[tuple[list[Turn], list[str]]]:
        """The turns (and their lines) in parts that fit the context."""
        system = prompt.instructions(template, with_schema=True)
        budget = prompt.line_budget(self.context_tokens, system)
        if budget < prompt.MIN_PART_TOKENS:
            raise InsightsFailed(
                "template_too_large",
                f"the template leaves {budget} tokens of INSIGHTS_CONTEXT_TOKENS="
                f"{self.context_tokens} for the call",
            )
        if prompt.estimate_tokens("\n".join(lines)) + 1 <= budget:
            return [(list(turns), list(lines))]  # most calls: one part
        out: list[tuple[list[Turn], list[str]]] = []
        current_turns: list[Turn] = []
        current_lines: list[str] = []
        used = 0
        for turn, full in zip(turns, lines, strict=True):
            for piece in prompt.pieces(full, budget):
                cost = prompt.estimate_tokens(piece) + 1
                if current_lines and used + cost > budget:
                    out.append((current_turns, current_lines))
                    current_turns, current_lines, used = [], [], 0
                if not current_turns or current_turns[-1] is not turn:
                    current_turns.append(turn)
                current_lines.append(piece)
                used += cost
        if current_lines or not out:
            out.append((current_turns, current_lines))
        return out

    async def _ask_part(
        self, template: InsightTemplate, lines: Sequence[str], part: int, parts: int
    ) -> tuple[Any, TokenUsage]:
        user = prompt.user_message(lines, part, parts)
        messages = self._messages(template, user, in_prompt=not self.structured_outputs)
        try:
            completion = await self._create(messages, template)
        except _SchemaRefused:
            log.warning("insights_json_schema_refused", model=self.model)
            self.structured_outputs = False
            messages = self._messages(template, user, in_prompt=True)
            completion = await self._create(messages, template)
        usage = _usage(completion)
        content = self._content(completion)
        try:
            return answer.decode(template, content), usage
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            problem = str(exc)[:500]
        log.warning("insights_answer_invalid", model=self.model, problem=_quiet(problem))
        repair = [
            *messages,
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": f"That answer is not valid: {problem}. Reply with the corrected"
                " JSON object only.",
            },
        ]
        completion = await self._create(repair, template)
        usage = merge.add_usage(usage, _usage(completion))
        content = self._content(completion)
        try:
            return answer.decode(template, content), usage
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InsightsFailed("invalid_answer", _quiet(str(exc))) from exc

    def _messages(
        self, template: InsightTemplate, user: str, *, in_prompt: bool
    ) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": prompt.instructions(template, with_schema=in_prompt)},
            {"role": "user", "content": user},
        ]

    def _response_format(self, template: InsightTemplate) -> dict[str, Any]:
        if self.structured_outputs:
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": answer.SCHEMA_NAME,
                    "strict": True,
                    "schema": answer.strict_schema(template),
                },
            }
        return {"type": "json_object"}

    @staticmethod
    def _content(completion: _Completion) -> str:
        if not completion.choices:
            raise InsightsFailed("invalid_answer", "the answer has no choices")
        choice = completion.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            raise InsightsFailed("refused", (refusal or "content filter")[:200])
        if choice.finish_reason == "length":
            raise InsightsFailed("truncated", "the answer ran out of tokens (finish_reason length)")
        content = choice.message.content
        if not content:
            raise InsightsFailed("invalid_answer", "the answer is empty")
        return str(content)

    async def _create(
        self, messages: list[dict[str, Any]], template: InsightTemplate
    ) -> _Completion:
        """One completion, with attempts on 429/5xx/connection errors (and on a 200 whose
        body is not a chat completion: a proxy's page)."""
        structured = self.structured_outputs
        retry_after: float | None = None
        status: int | str = ""
        for attempt in range(1, self.max_attempts + 1):
            started = time.perf_counter()
            try:
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=(),
                    # The body's messages and response_format are sent as they are: the
                    # SDK's transform of them (for nothing: they are plain JSON already) cost
                    # more than the rest of ChatInsights' own time per call
                    # (bench/insights_bench.py).
                    extra_body={
                        "messages": messages,
                        "response_format": self._response_format(template),
                    },
                )
                return _completion_decoder.decode(raw.content)
            except msgspec.DecodeError:
                retry_after, status = None, "unreadable_answer"
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                retry_after = _retry_after(exc)
                status = exc.status_code
            except openai.APIConnectionError as exc:  # timeouts included
                retry_after, status = None, type(exc).__name__
            except (
                openai.AuthenticationError,
                openai.PermissionDeniedError,
                openai.NotFoundError,
            ) as exc:
                log.error("insights_model_refused_key", model=self.model, status=exc.status_code)
                raise ModelMisconfigured(
                    f"the model server answered {exc.status_code}: check INSIGHTS_API_KEY and"
                    " INSIGHTS_MODEL"
                ) from exc
            except openai.APIStatusError as exc:
                if structured and exc.status_code in (400, 422) and _refuses_json_schema(exc):
                    raise _SchemaRefused from exc
                if exc.status_code >= 500:
                    retry_after, status = _retry_after(exc), exc.status_code
                else:
                    log.warning("insights_request_rejected", status=exc.status_code)
                    raise InsightsFailed(
                        "rejected", f"{exc.status_code}: {str(exc.message)[:200]}"
                    ) from exc
            log.warning(
                "insights_model_unavailable",
                model=self.model,
                status=status,
                attempt=attempt,
                retry_after=retry_after,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if attempt == self.max_attempts or (
                retry_after is not None and retry_after > MAX_RETRY_WAIT
            ):
                break
            await self._sleep(retry_after if retry_after is not None else _backoff(attempt))
        raise ModelUnavailable(
            f"the model server did not answer after {attempt} attempts", retry_after
        )


def _backoff(attempt: int) -> float:
    base: float = min(MAX_BACKOFF, float(2 ** (attempt - 1)))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - not cryptographic


if TYPE_CHECKING:
    _model: type[InsightsModel] = ChatInsights


def build_client(api_key: str | None, base_url: str | None, timeout: float) -> AsyncOpenAI:
    """An AsyncOpenAI client: no SDK retries (ours honour Retry-After), fast connect. With a
    base URL and no key a placeholder is sent (self-hosted servers rarely check it)."""
    if not api_key and base_url:
        api_key = PLACEHOLDER_API_KEY
    limits = openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
    return AsyncOpenAI(
        api_key=api_key or PLACEHOLDER_API_KEY,
        base_url=base_url or None,
        timeout=limits,
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(timeout=limits),
    )


def chat_insights(settings: Settings) -> ChatInsights | None:
    """The configured model, or None when INSIGHTS_MODEL is not set (insights not configured)."""
    if not settings.insights_model:
        return None
    client = build_client(
        settings.insights_api_key, settings.insights_base_url, settings.insights_timeout
    )
    return ChatInsights(
        client,
        model=settings.insights_model,
        context_tokens=settings.insights_context_tokens,
        max_attempts=settings.insights_max_attempts,
    )
