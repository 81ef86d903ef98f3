"""Issue 21 end to end on real nats-server, Postgres and SeaweedFS: ingest, transcriber,
notifier and services/insights run as in `transcribe up` (the OpenAI engine on one fake
server, the chat model on another, both the project's tests/fakes/openai_server.py). A call of
a `redact=pci` tenant in which the customer cancels and reads a card number matches the key's
category, gets its insights from the chat model and a signed `transcription.insights` webhook,
and the chat model never sees the card number; a 429 from the chat model is retried by the
consumer (Retry-After) and the call completes.

The stack has its own nats-server and database, like the redaction pipeline's."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from embedded import demo as demo_servers
from embedded.nats import NatsServer
from libs import apikeys
from libs.categories import rules
from libs.categories import store as categories
from libs.db import create_pool
from libs.provision import provision
from libs.redaction import Policy
from libs.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.stack_fixtures import (
    FIXTURES,
    WebhookInbox,
    create_database,
    free_port,
    pipeline_mains,
    services_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALL = (
    "Thanks for calling Acme, how can I help? I want to cancel my subscription. Can I take the "
    "card number please? Yes, it's four one one one, one one one one, one one one one, one one "
    "one one. And the security code? Seven three seven. Thank you."
)
CARD = re.compile(r"four one one one|one one one one|4111[\s-]?1111|seven three seven|737")
SECRET = "whsec_" + "aW5zaWdodHMtdGVzdC1zZWNyZXQtaW5zaWdodHMtdGVzdA=="


@dataclass
class Stack:
    settings: Settings
    base_url: str
    inbox: WebhookInbox
    pool: asyncpg.Pool
    chat: FakeOpenAIServer


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:

    inbox = WebhookInbox(secret=SECRET)
    async with (
        NatsServer(tmp_path_factory.mktemp("insights-e2e-nats")) as nats_server,
        FakeOpenAIServer(fixed_text=CALL) as engine,
        FakeOpenAIServer() as chat,
        demo_servers.serve(inbox.app()) as inbox_url,
    ):
        inbox.url = inbox_url + "/hooks"
        ours = replace(
            settings,
            database_url=await create_database(postgres_server, "insights"),
            nats_url=nats_server.url,
            ingest_port=free_port(),
            engine="openai",
            openai_api_key=engine.api_key,
            openai_base_url=engine.base_url,
            insights_model="gpt-4o-mini",
            insights_base_url_override=chat.base_url,
            insights_api_key_override=chat.api_key,
            # The client's own retries off: a 429 reaches the consumer, which naks with the
            # server's Retry-After and tries again on the redelivery.
            insights_max_attempts=1,
            ssrf_allowlist=settings.ssrf_allowlist + "," + inbox_url.split("://", 1)[1],
            ingest_spool_dir_override=tmp_path_factory.mktemp("insights-spool"),
        )
        await provision(ours)
        db = await create_pool(ours.require_database_url())
        try:
            async with services_running(ours, pipeline_mains(insights=True)) as running:
                yield Stack(ours, running.base_url, inbox, db, chat)
        finally:
            await db.close()


async def _tenant(stack: Stack) -> tuple[str, apikeys.ApiKey]:
    async with stack.pool.acquire() as conn:
        raw, key = await apikeys.create(
            conn,
            name="insights-tenant",
            tenant_prefix=f"in{uuid.uuid4().hex[:8]}",
            webhook_url=stack.inbox.url,
            webhook_secret=SECRET,
            redact=Policy.parse("pci").spec,
        )
        rule = rules.parse({"said": ["cancel my subscription"]})
        await categories.put(conn, uuid.UUID(key.id), "cancellation", rule)
    return raw, key


async def _submit(stack: Stack, raw_key: str) -> str:
    form = aiohttp.FormData()
    form.add_field("timestamps", "word")
    form.add_field("campaign", "winback")
    audio = FIXTURES / "hello_campaign.wav"
    form.add_field("file", audio.read_bytes(), filename="call.wav")
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            stack.base_url + "/api/media/transcribe", data=form, headers={"X-API-Key": raw_key}
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return str(body["audio_file_id"])


async def _insights_webhook(stack: Stack, audio_file_id: str) -> dict[str, Any]:
    """The job's `transcription.insights` webhook (after its `transcription.completed`)."""
    received = await stack.inbox.wait_for(audio_file_id, count=2, timeout=180)
    [hook] = [r for r in received if r["payload"]["type"] == "transcription.insights"]
    payload: dict[str, Any] = hook["payload"]
    return payload


async def _get(stack: Stack, path: str, raw_key: str) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.get(stack.base_url + path, headers={"X-API-Key": raw_key}) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def test_a_pci_call_gets_categories_and_insights_without_the_card_reaching_the_model(
    stack: Stack,
) -> None:
    raw, _ = await _tenant(stack)
    audio_file_id = await _submit(stack, raw)
    payload = await _insights_webhook(stack, audio_file_id)
    data = payload["data"]
    assert data["status"] == "completed", data
    assert data["insights"]["model"] == "gpt-4o-mini"
    [category] = data["categories"]
    assert category["name"] == "cancellation"
    assert "cancel my subscription" in category["matches"][0]["text"]
    assert not CARD.search(str(payload)), "card data in the webhook"

    # What reached the chat model: the redacted call, never the card or its code.
    sent = [r.text for r in stack.chat.chat_requests]
    assert sent and any("[CREDIT_CARD]" in text for text in sent)
    for text in sent:
        assert not CARD.search(text), "card data sent to the chat model"

    answer = await _get(stack, f"/api/media/insights/{audio_file_id}", raw)
    assert answer["status"] == "completed" and answer["usage"]["total_tokens"] > 0
    status = await _get(stack, f"/api/media/status/{audio_file_id}", raw)
    assert status["metadata"]["insights"]["status"] == "completed"
    assert [c["name"] for c in status["metadata"]["categories"]] == ["cancellation"]


async def test_a_429_from_the_chat_model_is_retried_and_completes(stack: Stack) -> None:
    unavailable = "transcribe_insights_model_unavailable_total"
    before = REGISTRY.get_sample_value(unavailable) or 0.0
    asked_before = len(stack.chat.chat_requests)
    stack.chat.fail_next(Fault.rate_limited(retry_after=1))
    raw, _ = await _tenant(stack)
    audio_file_id = await _submit(stack, raw)
    data = (await _insights_webhook(stack, audio_file_id))["data"]
    assert data["status"] == "completed", data
    assert (REGISTRY.get_sample_value(unavailable) or 0.0) == before + 1
    statuses = [r.status for r in stack.chat.chat_requests[asked_before:]]
    assert statuses[0] == 429 and statuses[-1] == 200
