"""The console's admin pages and a call's categories and insights, against the real routes
(docs/notifications.md, docs/categories.md, docs/insights.md, docs/llm.md): notification
rules added, tested, enabled and removed through the page; a category written in the editor,
applied to past calls, and the matching call listed (GET /api/media/search?category=); the
insight template set through its page, and a call's page showing its categories (the
evidence seeks the player) and the chat model's insights once services/insights has them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from libs.notifications import rules
from tests.browser.conftest import (
    ACTION,
    OUTCOME,
    PASSWORD,
    SUMMARY,
    Account,
    ConsoleStack,
    Tab,
    account,
    axe_audit,
    log_in,
    submitted_call,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def _api(stack: ConsoleStack, method: str, path: str, raw_key: str, **kw: Any) -> Any:
    headers = {"X-API-Key": raw_key}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, stack.base_url + path, headers=headers, **kw) as r,
    ):
        body = await r.json()
        assert r.status < 300, body
        return body


async def _clean(tab: Tab) -> None:
    assert tab.dialogs == [] and tab.errors == [] and tab.violations() == []


async def test_an_admin_adds_an_email_rule_tests_it_and_removes_it(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    admin = await account(console_stack, "admin")
    await log_in(tab, admin)
    await tab.page.click("nav a[href='/console/admin/notifications']")
    await expect(tab.page.locator("main .rules")).to_have_text("No rules yet.")
    await tab.page.fill("#n-events", "failed, category:churn")
    assert await tab.page.locator("#n-target").input_value() == "email"
    await tab.page.fill("#n-emails", "ops@example.org, lead@example.org")
    await tab.page.fill("#n-campaign", "renewals")
    await tab.page.click("form.new-rule button[type=submit]")

    row = tab.page.locator("main .rules tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td.events")).to_have_text("failed, category:churn")
    await expect(row.locator("td.target")).to_have_text("ops@example.org, lead@example.org")
    await expect(row.locator("td.campaign")).to_have_text("renewals")
    await expect(row.locator("td.state")).to_have_text("enabled")
    # What the page sent is what the API stored.
    [stored] = (await _api(console_stack, "GET", "/api/notifications", admin.raw_key))["rules"]
    assert stored["events"] == ["failed", "category:churn"]
    assert stored["target"] == "email" and stored["campaign"] == "renewals"
    assert stored["emails"] == ["ops@example.org", "lead@example.org"]
    assert await row.get_attribute("data-id") == stored["id"]

    # A test message is queued and listed among the messages sent.
    await row.locator("button.test").click()
    await expect(tab.page.locator("main p[role=status]")).to_have_text("Test message queued.")
    sent = tab.page.locator("main .deliveries tbody tr")
    await expect(sent).to_have_count(1)
    await expect(sent.locator("td").nth(1)).to_have_text("notification.test")
    await expect(sent.locator("td").nth(2)).to_have_text(f"email:{stored['id']}")

    # A rule the notifier disabled shows why, and is enabled again from the page.
    async with console_stack.pool.acquire() as conn:
        await rules.disable(conn, uuid.UUID(stored["id"]), "Slack answered 404 no_service")
    await tab.page.reload()
    await expect(row.locator("td.state")).to_contain_text("Slack answered 404 no_service")
    await tab.shot("admin-notifications")
    await row.locator("button.enable").click()
    await expect(row.locator("td.state")).to_have_text("enabled")
    await expect(row.locator("button.enable")).to_have_count(0)

    await row.locator("button.remove").click()
    await tab.page.locator("dialog.confirm button.danger").click()
    await expect(tab.page.locator("main .rules")).to_have_text("No rules yet.")
    assert (await _api(console_stack, "GET", "/api/notifications", admin.raw_key))["rules"] == []
    await _clean(tab)


async def test_a_bad_rule_is_refused_with_the_apis_reason(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    admin = await account(console_stack, "admin")
    await log_in(tab, admin)
    await tab.goto("/console/admin/notifications")
    await tab.page.fill("#n-events", "whenever")
    await tab.page.fill("#n-emails", "ops@example.org")
    await tab.page.click("form.new-rule button[type=submit]")
    await expect(tab.page.locator("main p[role=status]")).to_contain_text("(invalid_event)")
    await expect(tab.page.locator("main .rules")).to_have_text("No rules yet.")


async def test_a_supervisor_writes_a_category_applies_it_and_sees_the_matching_call(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    supervisor = await account(console_stack, "supervisor")
    console_stack.engine.texts[:] = [
        "good morning how can i help",
        "i would like to renew my subscription please",
    ]
    matching = await submitted_call(console_stack, supervisor, campaign="spring")
    console_stack.engine.texts[:] = ["good morning", "just a question about my bill thank you"]
    other = await submitted_call(console_stack, supervisor, campaign="spring")

    await log_in(tab, supervisor)
    await tab.page.click("nav a[href='/console/admin/categories']")
    await tab.page.fill("#c-name", "renewal")
    await tab.page.fill("#c-rule", '{"said": ["renew my subscription"]}')
    await tab.page.click("form[aria-labelledby=c-title] button[type=submit]")
    category = tab.page.locator("main tr[data-name=renewal]")
    await expect(category.locator("code")).to_have_text('{"said":["renew my subscription"]}')

    await category.locator("button.apply").click()
    await expect(tab.page.locator("main p[role=status]")).to_have_text(
        "renewal: 1 of 2 calls of the last 30 days match."
    )
    listed = tab.page.locator(".category-matches ul.matching a")
    await expect(listed).to_have_count(1)
    assert await listed.get_attribute("data-id") == matching
    await tab.shot("admin-categories-applied")

    # The calls list filtered on the category: from search, on the server.
    await category.locator("a", has_text="Matching calls").click()
    await tab.page.wait_for_url("**/console/?category=renewal")
    rows = tab.page.locator("table.calls tbody tr")
    await expect(rows).to_have_count(1)
    assert await rows.get_attribute("data-id") == matching
    await expect(rows.locator("span.tag")).to_have_text("renewal")
    assert await tab.page.locator(f"tr[data-id='{other}']").count() == 0
    await tab.shot("calls-by-category")
    await _clean(tab)


async def test_a_call_shows_its_categories_and_insights(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    admin = await account(console_stack, "admin")
    await _api(
        console_stack,
        "PUT",
        "/api/categories/renewal",
        admin.raw_key,
        json={"rule": {"said": ["renew my subscription"]}},
    )
    await log_in(tab, admin)
    # The insight template, set through its page: the outcomes the chat model chooses from.
    await tab.page.click("nav a[href='/console/admin/insight-template']")
    source = tab.page.locator("main .template-source")
    await expect(source).to_have_text("In force: the default (nothing stored).")
    await tab.page.fill("#t-outcomes", f"cancelled, {OUTCOME}")
    await tab.page.click("form.template button[type=submit]")
    await expect(source).to_have_text("In force: the key's template.")
    stored = await _api(console_stack, "GET", "/api/insights/template", admin.raw_key)
    assert stored["template"]["outcomes"] == ["cancelled", OUTCOME]
    await tab.shot("admin-insight-template")

    job = await submitted_call(console_stack, admin)
    await tab.goto(f"/console/calls/{job}")
    await tab.page.locator("main[data-ready=true]").wait_for()
    # services/insights evaluates the call after it completed: the page asks until it has.
    insights = tab.page.locator("section.insights[data-status=completed]")
    await insights.wait_for(timeout=120_000)
    await expect(insights.locator("dd.summary")).to_have_text(SUMMARY)
    await expect(insights.locator("dd.outcome")).to_have_text(OUTCOME)
    await expect(insights.locator("ul.action-items li")).to_have_text(f"Agent: {ACTION}")

    evidence = tab.page.locator("section.categories li[data-category=renewal] a.evidence-link")
    await expect(evidence).to_have_count(1)
    await expect(
        tab.page.locator("section.categories li[data-category=renewal] .evidence-text")
    ).to_contain_text("renew my subscription")
    start = float(await evidence.get_attribute("data-start") or "nan")
    # The player elsewhere first: the click must move it.
    await tab.page.evaluate(
        "(t) => { document.querySelector('audio').currentTime = t; }", start + 1.5
    )
    href = await evidence.get_attribute("href")
    assert href == f"/console/calls/{job}?t={start:.2f}"
    await evidence.click()
    assert tab.page.url.endswith(f"/console/calls/{job}")
    current = await tab.page.evaluate("() => document.querySelector('audio').currentTime")
    assert abs(current - start) < 0.05
    await tab.shot("call-insights")
    assert await axe_audit(tab) == []

    # The calls list shows them too, and filters on the outcome (from search).
    await tab.goto(f"/console/?outcome={OUTCOME}")
    row = tab.page.locator(f"table.calls tbody tr[data-id='{job}']")
    await expect(row.locator("span.tag")).to_have_text("renewal")
    await expect(row.locator("td").nth(6)).to_have_text(OUTCOME)
    await tab.goto("/console/?outcome=cancelled")
    await expect(tab.page.locator("p.message")).to_have_text("No calls match.")
    await _clean(tab)


async def test_an_operator_admin_adds_a_tenants_user_and_sees_dead_letters(
    console_stack: ConsoleStack, tab: Tab
) -> None:
    from libs.users import accounts

    tenant = await account(console_stack, "viewer")
    email = f"operator-{uuid.uuid4().hex[:8]}@example.org"
    async with console_stack.pool.acquire() as conn:
        await accounts.create(
            conn,
            email=email,
            password=PASSWORD,
            role="admin",
            api_key_id=None,
            operator=True,
            now=datetime.now(UTC),
        )
    await log_in(tab, Account(email=email, key_id="", raw_key=""))
    await tab.page.click("nav a[href='/console/admin/users']")
    # The operator says whose user it is (POST /api/users wants a key or operator: true).
    new = f"new-{tenant.email}"
    await tab.page.fill("#u-email", new)
    await tab.page.select_option("#u-role", "supervisor")
    await tab.page.fill("#u-key", tenant.key_id)
    await tab.page.click("form[aria-labelledby=nu-title] button[type=submit]")
    await expect(tab.page.locator("main p[role=status]")).to_contain_text("shown once")
    added = tab.page.locator("main table tbody tr", has_text=new)
    await expect(added).to_have_count(1)
    async with console_stack.pool.acquire() as conn:
        [user] = [u for u in await accounts.list_users(conn, None) if u.email == new]
    assert user.key_id == tenant.key_id and user.role == "supervisor" and not user.operator
    await tab.shot("admin-users-operator")

    await tab.page.click("nav a[href='/console/admin/dead-letters']")
    await expect(tab.page.locator("main h1")).to_have_text("Dead letters")
    # The list (GET /api/ops/dead-letters?open=true), or what says it is empty.
    listed = tab.page.locator("main table, main p:text('No open dead letters.')")
    await expect(listed.first).to_be_visible()
    await _clean(tab)


async def test_an_admin_sets_the_webhook_endpoint(
    console_stack: ConsoleStack, tab: Tab, webhook_inbox: Any
) -> None:
    admin = await account(console_stack, "admin")
    await log_in(tab, admin)
    await tab.page.click("nav a[href='/console/admin/webhooks']")
    # No URL yet: nothing to enable.
    await expect(tab.page.locator("#wh-url")).to_have_value("")
    assert await tab.page.locator("main button", has_text="Enable").count() == 0
    await tab.page.fill("#wh-url", webhook_inbox.url)
    await tab.page.click("section[aria-labelledby=endpoint-title] button[type=submit]")
    await expect(tab.page.locator("main p[role=status]").first).to_have_text("Saved.")
    await expect(tab.page.locator("#wh-url")).to_have_value(webhook_inbox.url)
    endpoint = await _api(console_stack, "GET", "/api/webhooks/endpoint", admin.raw_key)
    assert endpoint["webhook_url"] == webhook_inbox.url and endpoint["enabled"] is True
    await _clean(tab)
