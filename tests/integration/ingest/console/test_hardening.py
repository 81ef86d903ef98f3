"""The console's authentication and authorization under attack: concurrent guessing, revoked
keys, foreign tenants, self-lockout (services/ingest/access.py, context.py, routes/users.py,
libs/users)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from libs import apikeys

from tests.integration.ingest.conftest import Api, make_key
from tests.integration.ingest.console.conftest import Browser, Clock, make_user

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clock() -> Clock:
    """A time of this module's own: its failed logins from 127.0.0.1 never count against the
    other console modules' (same database, same address)."""
    return Clock(at=datetime(2300, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module", autouse=True)
async def forget_attempts(console: Api) -> AsyncIterator[None]:
    """The failures counted here lie in the future of the other modules' clocks, where they
    would count: removed when the module is done."""
    yield
    await console.pool.execute(
        "DELETE FROM media_pipeline.console_login_attempts WHERE attempted_at >= $1",
        datetime(2300, 1, 1, tzinfo=UTC),
    )


async def test_concurrent_guesses_do_not_pass_the_login_limit(console: Api) -> None:
    """Guesses sent all at once are counted like guesses sent one by one: no more than the
    limit get as far as the password check."""
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id)
    limit = console.settings.console_login_attempts
    answers = await asyncio.gather(
        *(Browser(console).login(user.email, f"guess number {i}") for i in range(limit * 3))
    )
    statuses = [status for status, _, _ in answers]
    assert statuses.count(401) <= limit, statuses
    assert statuses.count(429) >= limit * 2, statuses


async def test_a_user_whose_key_was_revoked_cannot_log_in(console: Api) -> None:
    """Revoking a key ends its users' sessions and their logins: the same refusal as a wrong
    password (no session is opened, nothing says the password was right)."""
    _, key = await make_key(console.pool)
    user = await make_user(console, key_id=key.id, role="admin")
    browser = Browser(console)
    status, _, _ = await browser.login(user.email)
    assert status == 200
    async with console.pool.acquire() as conn:
        assert await apikeys.revoke(conn, key.id)
    status, body, _ = await browser.call("GET", "/api/session")
    assert (status, body["error"]) == (401, "session_expired")
    status, body, headers = await Browser(console).login(user.email)
    assert (status, body["error"]) == (401, "invalid_credentials"), body
    assert "Set-Cookie" not in headers
    opened = await console.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.console_sessions WHERE user_id = $1 "
        "AND ended_at IS NULL",
        uuid.UUID(user.id),
    )
    assert opened == 1  # only the first login's, which no request can use any more
