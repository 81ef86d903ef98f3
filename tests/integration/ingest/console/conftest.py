"""Helpers of the console tests: a settable clock, users, and a browser-like session client
that keeps the tg_session cookie and the CSRF token (sent by hand, so nothing depends on a
cookie jar's rules for IP-address hosts)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest

from libs.settings import Settings
from libs.users import accounts
from tests.integration.ingest.conftest import Api, serve_api

PASSWORD = "correct horse battery"


@dataclass
class Clock:
    """The console's time: each test starts at a time of its own (so login-attempt windows of
    earlier tests never count) and moves it by hand."""

    at: datetime = field(default_factory=lambda: datetime(2100, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.at

    def fresh(self) -> None:
        self.at += timedelta(days=30)

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


async def make_user(
    api: Api,
    *,
    key_id: str | None,
    role: str = "viewer",
    password: str = PASSWORD,
    operator: bool = False,
) -> accounts.User:
    async with api.pool.acquire() as conn:
        return await accounts.create(
            conn,
            email=f"U{uuid.uuid4().hex[:10]}@Example.org",
            password=password,
            role=role,
            api_key_id=None if key_id is None else uuid.UUID(key_id),
            operator=operator,
            now=datetime.now(UTC),
        )


@dataclass
class Browser:
    """A logged-in console: the cookie and the CSRF token, sent like the pages send them."""

    api: Api
    token: str = ""
    csrf: str = ""
    origin: str | None = None

    async def login(
        self, email: str, password: str = PASSWORD, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = await self.call(
            "POST", "/api/session", json={"email": email, "password": password}, **kwargs
        )
        if status == 200:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(headers["Set-Cookie"])
            self.token = cookie["tg_session"].value
            self.csrf = body["csrf_token"]
        return status, body, headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        hdrs: dict[str, str] = {"Origin": self.origin or self.api.base_url}
        if self.token:
            hdrs["Cookie"] = f"tg_session={self.token}"
        if csrf and self.csrf:
            hdrs["X-CSRF-Token"] = self.csrf
        hdrs.update(headers or {})
        return await self.api.request(method, path, key=None, headers=hdrs, **kwargs)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
async def console(ingest_settings: Settings, clock: Clock) -> AsyncIterator[Api]:
    """The ingest app on the tests' clock."""
    async with serve_api(ingest_settings, clock=clock) as served:
        yield served


@pytest.fixture(autouse=True)
def fresh_time(clock: Clock) -> None:
    clock.fresh()
