"""The browser tier: the web console in headless chromium (Debian's, driven by Playwright for
Python) against a whole stack of its own: ingest + transcriber on the session's Postgres and
SeaweedFS, its own nats-server and database, the fake OpenAI server as the engine (so the
transcript's words are the test's own) and the offline engine for model=offline.

Screenshots of every screen go to tests/browser/artifacts/ (gitignored)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
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
)

from embedded.nats import NatsServer
from libs.db import create_pool
from libs.provision import provision
from libs.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest
from tests.stack_fixtures import create_database, eventually, free_port

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
    """What the fake engine says: the next texts, else a default sentence."""

    texts: list[str] = field(default_factory=list)
    default: str = (
        "thank you for calling the renewals team my name is sam how can i help you today "
        "i would like to renew my subscription for another year please"
    )

    def __call__(self, request: RecordedRequest, audio: bytes) -> str:
        return self.texts.pop(0) if self.texts else self.default


@dataclass
class ConsoleStack:
    settings: Settings
    base_url: str
    pool: asyncpg.Pool
    fake: FakeOpenAIServer
    engine: Engine


@pytest.fixture(scope="session")
async def console_stack(
    settings: Settings, postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleStack]:
    from services.ingest import main as ingest_main
    from services.transcriber import main as transcriber_main

    engine = Engine()
    async with (
        NatsServer(tmp_path_factory.mktemp("console-nats")) as nats_server,
        FakeOpenAIServer(transcript_fn=engine) as fake,
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
        )
        await provision(ours)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(ingest_main.run(ours, stop)),
            asyncio.create_task(transcriber_main.run(ours, stop)),
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
            yield ConsoleStack(ours, base, pool, fake, engine)
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


async def axe_audit(page: Page) -> list[dict[str, Any]]:
    """axe-core (vendored from console/node_modules by the build, never a CDN) on the page:
    the serious and critical violations. Evaluated through the DevTools protocol, which the
    page's CSP does not govern (a <script> tag of it would be refused, as it should be)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target)}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
