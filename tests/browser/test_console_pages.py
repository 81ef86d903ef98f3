"""The console's pages in a real browser: the stable contract (docs/console.md), the CSP."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Tab, axe_audit

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_login_page_is_a_form_with_email_and_password(tab: Tab) -> None:
    response = await tab.page.goto(tab.base_url + "/console/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # Not logged in: the app sends the browser to the login form.
    await tab.page.wait_for_url("**/console/login?next=*")
    form = tab.page.locator("form")
    await form.locator("input[name=email]").wait_for()
    assert await form.locator("input[name=password][type=password]").count() == 1
    await tab.shot("login")
    assert await axe_audit(tab) == []
    assert tab.violations() == [] and tab.errors == [] and tab.dialogs == []
