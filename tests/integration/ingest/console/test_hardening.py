"""The console's authentication and authorization under attack: concurrent guessing, revoked
keys, foreign tenants, self-lockout (services/ingest/access.py, context.py, routes/users.py,
libs/users)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.ingest.conftest import Api, make_key
from tests.integration.ingest.console.conftest import Browser, make_user

pytestmark = pytest.mark.integration


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
