"""The browser tier: the web console in headless chromium (Debian's, driven by Playwright for
Python) against a whole stack of its own: ingest + transcriber + services/insights on the
session's Postgres and SeaweedFS, its own nats-server and database, the fake OpenAI server as
the engine (so the transcript's words are the test's own) and the offline engine for
model=offline, and a second fake OpenAI server as the chat model of insights (INSIGHTS_MODEL
set: every completed call gets its categories and insights).

Screenshots of every screen go to tests/browser/artifacts/ (gitignored)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
    expect,
)

from embedded.nats import NatsServer
from libs.db import create_pool
from libs.provision import provision
from libs.settings import Settings
from tests.fakes import chat
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest
from tests.stack_fixtures import FIXTURES, create_database, eventually, free_port

# A loaded 2-core machine: assertions wait as long as the page's own actions may.
expect.set_options(timeout=30_000)

ARTIFACTS = Path(__file__).parent / "artifacts"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
# Without the background-networking flags chromium's own connections are refused by a closed
# network and slow every start.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
XSS = "<img src=x onerror=alert(1)>"


@dataclass
class Engine:
    """What the fake engine says: the next queued text, else the two sides of a call in turn
    (one per channel of a stereo call), the agent's with a hostile payload among its words."""

    texts: list[str] = field(default_factory=list)
    sides: tuple[str, str] = (
        f"thank you for calling the renewals team {XSS} how can i help you today",
        "hello i would like to renew my subscription for another year please",
    )
    calls: int = 0

    def __call__(self, request: RecordedRequest, audio: bytes) -> str:
        if self.texts:
            return self.texts.pop(0)
        self.calls += 1
        return self.sides[(self.calls - 1) % 2]


SUMMARY = "The customer renewed the subscription for another year."
ACTION = "Send the renewal confirmation"
OUTCOME = "renewed"


def insights_answer(request: chat.ChatRequest) -> Any:
    """The chat model's answer: a valid instance of the schema asked for, with a summary, an
    action item and (when the template's outcomes hold it) the outcome of our own."""
    schema = request.schema or {}
    answer = chat.example(schema)
    properties = schema.get("properties", {})
    if "summary" in properties:
        answer["summary"] = SUMMARY
    if "action_items" in properties:
        answer["action_items"] = [{"owner": "agent", "text": ACTION}]
    if OUTCOME in str(properties.get("outcome", {})):
        answer["outcome"] = OUTCOME
    return answer


@dataclass
class ConsoleStack:
    settings: Settings
    base_url: str
    pool: asyncpg.Pool
    fake: FakeOpenAIServer
    engine: Engine
    chat: FakeOpenAIServer


@pytest.fixture(scope="session")
async def console_stack(
    settings: Settings, postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleStack]:
    from services.ingest import main as ingest_main
    from services.insights import main as insights_main
    from services.transcriber import main as transcriber_main

    engine = Engine()
    async with (
        NatsServer(tmp_path_factory.mktemp("console-nats")) as nats_server,
        FakeOpenAIServer(transcript_fn=engine) as fake,
        FakeOpenAIServer(chat_fn=insights_answer) as chat_model,
    ):
        ours = replace(
            settings,
            database_url=await create_database(postgres_server, "console"),
            nats_url=nats_server.url,
            ingest_port=free_port(),
            engine="openai",
            openai_api_key=fake.api_key,
            openai_base_url=fake.base_url,
            webhook_url=None,
            ingest_spool_dir_override=tmp_path_factory.mktemp("console-spool"),
            insights_model="gpt-4o-mini",
            insights_base_url_override=chat_model.base_url,
            insights_api_key_override=chat_model.api_key,
        )
        await provision(ours)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(ingest_main.run(ours, stop)),
            asyncio.create_task(transcriber_main.run(ours, stop)),
            asyncio.create_task(insights_main.run(ours, stop)),
        ]
        base = f"http://{ours.ingest_host}:{ours.ingest_port}"

        async def ready() -> bool:
            for t in tasks:
                if t.done():
                    t.result()
            try:
                async with aiohttp.ClientSession() as s, s.get(base + "/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        pool = await create_pool(ours.require_database_url())
        try:
            await eventually(ready, timeout=60)
            yield ConsoleStack(ours, base, pool, fake, engine, chat_model)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
            await pool.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed: scripts/test installs it (apt-get install chromium)"
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=executable, headless=True, args=LAUNCH_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Tab:
    """A page of its own browser context (its own cookies), recording what must never happen:
    dialogs (alert from an injected script) and CSP violations or script errors."""

    page: Page
    base_url: str
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]


@pytest.fixture
async def tab_factory(
    browser: Browser, console_stack: ConsoleStack
) -> AsyncIterator[Callable[[], Any]]:
    contexts: list[BrowserContext] = []

    async def make() -> Tab:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(30_000)
        tab = Tab(page, console_stack.base_url)

        async def on_dialog(dialog: Dialog) -> None:
            tab.dialogs.append(dialog.message)
            await dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                tab.console.append(message.text)

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        return tab

    yield make
    for context in contexts:
        await context.close()


@pytest.fixture
async def tab(tab_factory: Callable[[], Any]) -> Tab:
    made: Tab = await tab_factory()
    return made


async def axe_audit(tab: Tab) -> list[dict[str, Any]]:
    """axe-core (vendored from console/node_modules by the build, never a CDN) on the page:
    the serious and critical violations. Evaluated through the DevTools protocol, which the
    page's CSP does not govern (a <script> tag of it would be refused, as it should be). axe
    adds a <style> of its own, which the CSP refuses: that complaint is the tool's, not the
    page's, and is dropped."""
    page = tab.page
    before = len(tab.console)
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target)}))"
    )
    tab.console[before:] = [m for m in tab.console[before:] if "inline style" not in m]
    return [v for v in result if v["impact"] in ("serious", "critical")]


PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    email: str
    key_id: str
    raw_key: str


async def tenant_key(stack: ConsoleStack, *, redact: str = "") -> tuple[str, str]:
    """A new tenant's API key: (raw key, key id)."""
    from libs import apikeys
    from libs.redaction import Policy

    async with stack.pool.acquire() as conn:
        raw, key = await apikeys.create(
            conn,
            name="console-tenant",
            tenant_prefix=f"t{uuid.uuid4().hex[:8]}",
            redact=Policy.from_spec(redact).spec if redact else "",
        )
    return raw, key.id


async def account(stack: ConsoleStack, role: str, *, key: tuple[str, str] | None = None) -> Account:
    """A console user of `key`'s tenant (a new tenant without one)."""
    from libs.users import accounts

    raw, key_id = key or await tenant_key(stack)
    async with stack.pool.acquire() as conn:
        user = await accounts.create(
            conn,
            email=f"{role}-{uuid.uuid4().hex[:8]}@example.org",
            password=PASSWORD,
            role=role,
            api_key_id=uuid.UUID(key_id),
            operator=False,
            now=datetime.now(UTC),
        )
    return Account(email=user.email, key_id=key_id, raw_key=raw)


async def log_in(tab: Tab, who: Account) -> None:
    await tab.goto("/console/login")
    await tab.page.fill("input[name=email]", who.email)
    await tab.page.fill("input[name=password]", PASSWORD)
    await tab.page.click("form button[type=submit]")
    await tab.page.wait_for_url(tab.base_url + "/console/")
    await tab.page.locator("table.calls").wait_for()


CALL = (FIXTURES / "call_stereo_8k.wav").read_bytes()


async def submitted_call(
    stack: ConsoleStack, who: Account, campaign: str = "renewals", *, wait: bool = True
) -> str:
    """A stereo call submitted with the tenant's key and (with `wait`) transcribed: its id."""
    form = aiohttp.FormData()
    form.add_field("campaign", campaign)
    form.add_field("timestamps", "word")
    form.add_field("file", CALL, filename="call.wav", content_type="audio/wav")
    headers = {"X-API-Key": who.raw_key}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.base_url + "/api/media/transcribe", data=form, headers=headers
        ) as r:
            body = await r.json()
            assert r.status == 200, body
        job = str(body["audio_file_id"])
        if not wait:
            return job

        async def done() -> bool:
            async with s.get(f"{stack.base_url}/api/media/status/{job}", headers=headers) as r:
                status = (await r.json())["status"]
                assert status != "failed"
                return status == "completed"

        await eventually(done, timeout=120, interval=0.2)
    return job
