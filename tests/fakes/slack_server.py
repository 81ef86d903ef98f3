"""A Slack-compatible incoming-webhook receiver for tests (aiohttp, loopback).

It enforces what Slack enforces on an incoming-webhook POST and answers as Slack answers
(api.slack.com/messaging/webhooks#handling_errors, api.slack.com/reference/block-kit): `200 ok`;
`400 invalid_payload` (not JSON, not an object), `400 no_text` (neither text nor blocks),
`400 invalid_blocks` (over 50 blocks, a header over 150 characters, a section text over 3000, an
unknown block type, ...). Tests script Slack's other answers before the default one:
`404 no_service`, `403 action_prohibited`, `410 channel_is_archived`, `429 rate_limited` with
Retry-After, `500`...

    async with SlackServer() as slack:
        slack.script.append(Answer(404, "no_service"))
        ... POST to slack.url ...
        messages = await slack.wait_messages(1)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.stack_fixtures import free_port

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
MAX_FIELDS = 10
CONTEXT_ELEMENTS = 10
TEXT_CHARS = 40000
BLOCK_TYPES = frozenset({"section", "header", "context", "divider", "actions", "image"})


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    content_type: str
    body: bytes
    answer: Answer
    payload: dict[str, Any] | None


class PayloadError(Exception):
    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code


def _text_of(obj: object, where: str) -> str:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        raise PayloadError("invalid_blocks", f"{where}: a text object needs type plain_text|mrkdwn")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise PayloadError("invalid_blocks", f"{where}: empty text")
    return text


def check_payload(payload: object) -> None:
    """Raises PayloadError(code) where Slack would refuse the message."""
    if not isinstance(payload, dict):
        raise PayloadError("invalid_payload", "not a JSON object")
    text, blocks = payload.get("text"), payload.get("blocks")
    if text is None and blocks is None:
        raise PayloadError("no_text", "neither text nor blocks")
    if text is not None and (not isinstance(text, str) or len(text) > TEXT_CHARS):
        raise PayloadError("invalid_payload", "text must be a string")
    if blocks is None:
        return
    if not isinstance(blocks, list) or not blocks or len(blocks) > MAX_BLOCKS:
        raise PayloadError("invalid_blocks", f"blocks: 1 to {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise PayloadError("invalid_blocks", f"{where}: unknown block type")
        kind = block["type"]
        if kind == "header":
            t = block.get("text")
            if not isinstance(t, dict) or t.get("type") != "plain_text":
                raise PayloadError("invalid_blocks", f"{where}: a header is plain_text")
            if len(_text_of(t, where)) > HEADER_CHARS:
                raise PayloadError("invalid_blocks", f"{where}: header over {HEADER_CHARS}")
        elif kind == "section":
            fields = block.get("fields")
            if "text" not in block and not fields:
                raise PayloadError("invalid_blocks", f"{where}: a section needs text or fields")
            if "text" in block and len(_text_of(block["text"], where)) > SECTION_CHARS:
                raise PayloadError("invalid_blocks", f"{where}: section text over {SECTION_CHARS}")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                    raise PayloadError("invalid_blocks", f"{where}: at most {MAX_FIELDS} fields")
                for f in fields:
                    if len(_text_of(f, where)) > FIELD_CHARS:
                        raise PayloadError("invalid_blocks", f"{where}: field over {FIELD_CHARS}")
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= CONTEXT_ELEMENTS:
                raise PayloadError("invalid_blocks", f"{where}: 1 to {CONTEXT_ELEMENTS} elements")
            for e in elements:
                if len(_text_of(e, where)) > FIELD_CHARS:
                    raise PayloadError("invalid_blocks", f"{where}: context over {FIELD_CHARS}")


class SlackServer:
    """Incoming webhooks at http://127.0.0.1:<port>/services/T.../B.../<secret>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.script: list[Answer] = []
        self.requests: list[Request] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0001/B0001/abcdefSECRET"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Payloads Slack would have posted (answered 200 ok)."""
        return [r.payload for r in self.requests if r.answer.status == 200 and r.payload]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload: dict[str, Any] | None = None
        answer: Answer
        try:
            if request.content_type != "application/json":
                raise PayloadError("invalid_payload", "Content-Type must be application/json")
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise PayloadError("invalid_payload", "not JSON") from exc
            check_payload(decoded)
            payload = decoded
            answer = self.script.pop(0) if self.script else Answer(200, "ok")
        except PayloadError as exc:
            answer = Answer(400, exc.code)
        async with self._changed:
            self.requests.append(Request(request.path, request.content_type, body, answer, payload))
            self._changed.notify_all()
        return web.Response(
            status=answer.status, text=answer.body, headers=answer.headers, content_type="text/html"
        )

    async def wait_requests(self, count: int, timeout: float = 30.0) -> list[Request]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), timeout
            )
        return self.requests

    async def wait_messages(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.messages) >= count), timeout
            )
        return self.messages

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/services/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
