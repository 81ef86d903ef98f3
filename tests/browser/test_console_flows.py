"""The console as its users work with it, in headless chromium against a whole stack: log in,
upload with progress, watch the call complete without a reload, open it, play it and see the
spoken word highlighted, click a word to seek, search and open the call at the hit, roles and
tenants, and hostile strings that must stay text."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import (
    CALL,
    PASSWORD,
    XSS,
    Account,
    ConsoleStack,
    Tab,
    account,
    axe_audit,
    log_in,
    submitted_call,
    tenant_key,
)
from tests.fakes.openai_server import Fault

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CURRENT = ".w[aria-current=true]"


async def _current_start(tab: Tab) -> float | None:
    start = await tab.page.evaluate(
        f"() => {{ const w = document.querySelector('{CURRENT}'); return w ? Number(w.dataset.start) : null; }}"
    )
    return None if start is None else float(start)


async def _no_markup_ran(tab: Tab) -> None:
    assert tab.dialogs == []
    assert await tab.page.locator("img").count() == 0
    assert tab.violations() == [] and tab.errors == []


async def test_upload_then_open_play_and_seek(console_stack: ConsoleStack, tab: Tab) -> None:
    supervisor = await account(console_stack, "supervisor")
    await log_in(tab, supervisor)
    await tab.page.evaluate("() => { window.sameDocument = true; }")
    await tab.page.fill("#u-campaign", XSS)
    await tab.page.set_input_files(
        "#files", files=[{"name": f"{XSS}.wav", "mimeType": "audio/wav", "buffer": CALL}]
    )
    upload = tab.page.locator("ul.uploads li").first
    await expect(upload.locator(".name")).to_have_text(f"{XSS}.wav")
    await tab.page.wait_for_function(
        "() => document.querySelector('ul.uploads progress').value === 100"
    )
    await expect(upload.locator(".state")).to_have_text("queued")
    await tab.shot("upload")

    # The new call appears and turns completed by itself: no reload, no navigation.
    row = tab.page.locator("table.calls tbody tr").first
    await expect(row).to_have_attribute("data-state", "completed", timeout=120_000)
    assert await tab.page.evaluate("() => window.sameDocument === true")
    await expect(row.locator("td.campaign")).to_have_text(XSS)
    await tab.shot("calls")
    await _no_markup_ran(tab)

    await row.locator("a.call-link").click()
    await tab.page.wait_for_url("**/console/calls/*")
    await tab.page.locator("main[data-ready=true]").wait_for()
    assert await tab.page.locator("audio").count() == 1
    roles = set(await tab.page.locator(".turn .role").all_text_contents())
    assert {"Agent", "Customer"} <= roles
    words = tab.page.locator(".w[data-start]")
    assert await words.count() > 20
    # The engine's words include the payload: it is text in the transcript, never an element.
    assert XSS.split()[0] in await tab.page.locator("ol.turns").inner_text()
    await tab.shot("call")
    await _no_markup_ran(tab)

    # A click on a word seeks the audio to its start and highlights it.
    word = words.nth(7)
    start = float(await word.get_attribute("data-start") or "nan")
    await word.click()
    current = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert abs(current - start) < 0.05
    await expect(word).to_have_attribute("aria-current", "true")

    # Playing (muted), the highlighted word advances with the audio.
    await tab.page.evaluate(
        "() => { const a = document.querySelector('audio'); a.muted = true; a.currentTime = 0; return a.play(); }"
    )
    await tab.page.wait_for_function(
        f"() => {{ const w = document.querySelector('{CURRENT}'); return w && Number(w.dataset.start) >= 0; }}"
    )
    first = await _current_start(tab)
    assert first is not None
    await tab.page.wait_for_function(
        f"() => {{ const w = document.querySelector('{CURRENT}'); return w && Number(w.dataset.start) > {first} + 0.5; }}"
    )
    assert await tab.page.locator(CURRENT).count() == 1
    await tab.page.evaluate("() => document.querySelector('audio').pause()")
    await tab.shot("call-playing")

    # Keyboard: k toggles playback; l seeks forward five seconds.
    before = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    await tab.page.locator("body").press("l")
    after = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert after > before

    assert await axe_audit(tab) == []
    await _no_markup_ran(tab)


async def test_a_search_hit_opens_the_call_at_its_time(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    viewer = await account(console_stack, "viewer")
    job = await submitted_call(console_stack, viewer)
    await log_in(tab, viewer)
    await tab.page.fill("#q", "subscription")
    await tab.page.press("#q", "Enter")
    hit = tab.page.locator(f"a.hit[href^='/console/calls/{job}?t=']").first
    await hit.wait_for()
    assert await hit.locator("mark").first.inner_text() == "subscription"
    await tab.shot("search")
    await hit.click()
    await tab.page.wait_for_url(f"**/console/calls/{job}?t=*")
    await tab.page.locator("main[data-ready=true]").wait_for()
    # The player is at the matching word itself (its word-level time from the call's search),
    # which is the word highlighted.
    spoken = tab.page.locator(CURRENT)
    await expect(spoken).to_have_text("subscription")
    at = float(await spoken.get_attribute("data-start") or "nan")
    current = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert abs(current - at) < 0.05
    assert at > 0
    await tab.shot("call-from-search")
    await _no_markup_ran(tab)


async def test_a_viewer_has_no_delete_button_and_the_api_refuses(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    viewer = await account(console_stack, "viewer")
    job = await submitted_call(console_stack, viewer)
    await log_in(tab, viewer)
    await tab.goto(f"/console/calls/{job}")
    await tab.page.locator("main[data-ready=true]").wait_for()
    assert await tab.page.locator("#delete").count() == 0
    assert await tab.page.locator("#rerun").count() == 0
    await tab.shot("call-viewer")
    status = await tab.page.evaluate(
        """async (job) => {
            const s = await (await fetch('/api/session')).json();
            const r = await fetch('/api/media/' + job, {method: 'DELETE', headers: {'X-CSRF-Token': s.csrf_token}});
            return r.status;
        }""",
        job,
    )
    assert status == 403


async def test_another_tenants_call_is_not_found(console_stack: ConsoleStack, tab: Tab) -> None:
    owner = await account(console_stack, "viewer")
    job = await submitted_call(console_stack, owner)
    stranger = await account(console_stack, "admin")
    await log_in(tab, stranger)
    await tab.goto(f"/console/calls/{job}")
    await expect(tab.page.locator("h1")).to_have_text("Call not found")
    assert await tab.page.locator("audio").count() == 0
    status = await tab.page.evaluate(
        "async (job) => (await fetch('/api/media/status/' + job)).status", job
    )
    assert status == 404
    await tab.shot("call-not-found")


async def test_a_speaker_named_with_markup_stays_text(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    supervisor = await account(console_stack, "supervisor")
    job = await submitted_call(console_stack, supervisor)
    await log_in(tab, supervisor)
    await tab.goto(f"/console/calls/{job}")
    await tab.page.locator("main[data-ready=true]").wait_for()
    await tab.page.fill("#name-1", XSS)
    await tab.page.click("form.speakers-form button[type=submit]")
    # Saved, and the page shows it again from the status answer, as text.
    await tab.page.locator("main[data-ready=true]").wait_for()
    await expect(tab.page.locator(".speaker-name").first).to_have_text(f" {XSS}")
    await expect(tab.page.locator("#name-1")).to_have_value(XSS)
    await tab.shot("call-speaker-named")
    await _no_markup_ran(tab)


async def test_redacted_values_are_marked_tokens(console_stack: ConsoleStack, tab: Tab) -> None:
    raw, key_id = await tenant_key(console_stack, redact="pci")
    viewer = await account(console_stack, "viewer", key=(raw, key_id))
    console_stack.engine.texts[:] = [
        "can i take the card number please",
        "yes it is 4111 1111 1111 1111 thank you",
    ]
    job = await submitted_call(console_stack, viewer)
    await log_in(tab, viewer)
    await tab.goto(f"/console/calls/{job}")
    await tab.page.locator("main[data-ready=true]").wait_for()
    token = tab.page.locator(".w.redacted").first
    await expect(token).to_have_text("[CREDIT_CARD]")
    assert await token.get_attribute("title") == "redacted: credit card"
    assert "4111" not in await tab.page.locator("main").inner_text()
    await tab.shot("call-redacted")


async def test_the_keyboard_moves_between_turns(console_stack: ConsoleStack, tab: Tab) -> None:
    viewer = await account(console_stack, "viewer")
    job = await submitted_call(console_stack, viewer)
    await log_in(tab, viewer)
    await tab.goto(f"/console/calls/{job}")
    await tab.page.locator("main[data-ready=true]").wait_for()
    starts = sorted(
        {
            float(s)
            for s in await tab.page.locator("li.turn").evaluate_all(
                "items => items.map(li => li.dataset.start)"
            )
        }
    )
    assert len(starts) >= 2
    await tab.page.locator("body").press("n")
    now = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert now == pytest.approx(starts[1], abs=0.01)
    await tab.page.locator("body").press("p")
    now = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert now == pytest.approx(starts[0], abs=0.01)
    # Tab reaches the player's labelled controls.
    await tab.page.locator("#play").focus()
    assert await tab.page.locator("#play").get_attribute("aria-keyshortcuts") == "Space k"


@pytest.mark.parametrize(
    "page", ["webhooks", "users", "categories", "notifications", "insight-template"]
)
async def test_admin_pages_open(console_stack: ConsoleStack, tab: Tab, page: str) -> None:
    admin = await account(console_stack, "admin")
    await log_in(tab, admin)
    await tab.page.click(f"nav a[href='/console/admin/{page}']")
    await tab.page.wait_for_url(f"**/console/admin/{page}")
    await tab.page.locator("main h1").wait_for()
    await tab.page.locator("main form").first.wait_for()
    await tab.shot(f"admin-{page}")
    assert tab.errors == [] and tab.violations() == []


async def test_a_call_submitted_elsewhere_appears_and_completes(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    viewer = await account(console_stack, "viewer")
    await log_in(tab, viewer)
    await expect(tab.page.locator("p.message")).to_have_text("No calls yet.")
    await tab.page.evaluate("() => { window.sameDocument = true; }")
    job = await submitted_call(console_stack, viewer, campaign="from-the-api")
    row = tab.page.locator(f"table.calls tbody tr[data-id='{job}']")
    await expect(row).to_have_attribute("data-state", "completed", timeout=120_000)
    await expect(row.locator("td.campaign")).to_have_text("from-the-api")
    assert await tab.page.evaluate("() => window.sameDocument === true")


async def test_several_files_dropped_upload_each_with_its_progress(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    supervisor = await account(console_stack, "supervisor")
    await log_in(tab, supervisor)
    audio = base64.b64encode(CALL).decode()
    # A real drop: a DataTransfer holding two files, dropped on the zone.
    await tab.page.evaluate(
        """(audio) => {
            const bytes = Uint8Array.from(atob(audio), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            for (const name of ['first.wav', 'second.wav']) data.items.add(new File([bytes], name, {type: 'audio/wav'}));
            const zone = document.getElementById('dropzone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        audio,
    )
    uploads = tab.page.locator("ul.uploads li")
    await expect(uploads).to_have_count(2)
    await expect(uploads.locator(".name")).to_have_text(["first.wav", "second.wav"])
    await tab.page.wait_for_function(
        "() => [...document.querySelectorAll('ul.uploads progress')].every(p => p.value === 100)"
    )
    await expect(uploads.locator(".state")).to_have_text(["queued", "queued"])
    rows = tab.page.locator("table.calls tbody tr")
    await expect(rows).to_have_count(2)
    for i in range(2):
        await expect(rows.nth(i)).to_have_attribute("data-state", "completed", timeout=120_000)
    assert await axe_audit(tab) == []
    await tab.shot("calls-dropped")


async def test_an_admin_adds_a_user_who_can_log_in(
    console_stack: ConsoleStack, tab: Tab, tab_factory: Callable[[], Any]
) -> None:
    admin = await account(console_stack, "admin")
    await log_in(tab, admin)
    await tab.goto("/console/admin/users")
    email = f"new-{admin.email}"
    await tab.page.fill("#u-email", email)
    await tab.page.select_option("#u-role", "viewer")
    await tab.page.fill("#u-password", PASSWORD)
    await tab.page.click("form[aria-labelledby=nu-title] button[type=submit]")
    await expect(tab.page.locator("main table tbody tr", has_text=email)).to_have_count(1)
    await tab.shot("admin-users-added")
    other: Tab = await tab_factory()
    await log_in(other, Account(email=email, key_id=admin.key_id, raw_key=admin.raw_key))
    assert await other.page.locator("nav a[href='/console/admin/users']").count() == 0


async def test_the_call_page_shows_progress_then_the_call(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    viewer = await account(console_stack, "viewer")
    release = asyncio.Event()
    # Both channels' requests wait until released: the job stays processing meanwhile.
    console_stack.fake.fail_next(Fault.held(release), Fault.held(release))
    try:
        job = await submitted_call(console_stack, viewer, wait=False)
        await log_in(tab, viewer)
        await tab.goto(f"/console/calls/{job}")
        await tab.page.locator("section.progress progress").wait_for()
        await tab.page.evaluate("() => { window.sameDocument = true; }")
        await tab.shot("call-running")
    finally:
        release.set()
    await tab.page.locator("main[data-ready=true]").wait_for(timeout=120_000)
    assert await tab.page.locator(".w[data-start]").count() > 10
    assert await tab.page.evaluate("() => window.sameDocument === true")
