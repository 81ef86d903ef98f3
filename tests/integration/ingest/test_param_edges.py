"""Times at the edges of the calendar and numbers that are not ASCII digits, through the real
ingest app: a clear 400 with the parameter's code, never a 500 and never a silent accept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from libs import params
from tests.integration.ingest.conftest import Api, make_key

pytestmark = pytest.mark.integration

# In UTC the first is in year 0 and the second in year 10000: neither exists for Python or
# the database driver.
BEFORE_YEAR_1 = "0001-01-01T00:00:00+14:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-14:00"
EDGES = [BEFORE_YEAR_1, AFTER_YEAR_9999]


def _cursor(when: datetime) -> str:
    return params.encode_cursor(when, uuid.uuid4())


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/api/media/jobs", "since"),
        ("GET", "/api/media/jobs", "until"),
        ("GET", "/api/ops/dead-letters", "since"),
        ("POST", "/api/webhooks/recover", "since"),
    ],
)
async def test_times_outside_the_calendar_are_400(
    api: Api, method: str, path: str, name: str, edge: str
) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request(method, f"{path}?{name}={quote(edge)}", key=raw)
    assert (status, body["error"]) == (400, f"invalid_{name}"), body


@pytest.mark.parametrize("edge", EDGES)
async def test_recover_until_outside_the_calendar_is_400(api: Api, edge: str) -> None:
    raw, _ = await make_key(api.pool)
    query = f"since=2020-01-01T00:00:00Z&until={quote(edge)}"
    status, body, _ = await api.request("POST", f"/api/webhooks/recover?{query}", key=raw)
    assert (status, body["error"]) == (400, "invalid_until"), body


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14))),
    ],
)
async def test_cursors_that_decode_outside_the_calendar_are_400(api: Api, when: datetime) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request("GET", f"/api/media/jobs?cursor={_cursor(when)}", key=raw)
    assert (status, body["error"]) == (400, "invalid_cursor"), body


async def test_the_first_and_last_instants_in_utc_still_answer(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    first, last = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"
    for path in (
        f"/api/media/jobs?since={first}&until={last}",
        f"/api/media/jobs?cursor={_cursor(datetime(1, 1, 1, tzinfo=UTC))}",
        f"/api/media/jobs?cursor={_cursor(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))}",
        f"/api/ops/dead-letters?since={first}",
    ):
        status, body, _ = await api.request("GET", path, key=raw)
        assert status == 200, (path, body)
    status, body, _ = await api.request(
        "POST", f"/api/webhooks/recover?since={first}&until={last}", key=raw
    )
    assert status == 202, body


@pytest.mark.parametrize(
    "limit",
    ["١٠", "１０", "1_0", "+5", "-0", " 5 5", "٥", "5\u0660", "1e1", "0x10"],
)
@pytest.mark.parametrize("path", ["/api/media/jobs", "/api/ops/dead-letters"])
async def test_limits_are_ascii_digits_only(api: Api, path: str, limit: str) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request("GET", f"{path}?limit={quote(limit)}", key=raw)
    assert (status, body["error"]) == (400, "invalid_limit"), body


async def test_plain_limits_still_answer(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    for path in ("/api/media/jobs?limit=10", "/api/ops/dead-letters?limit=%2010%20"):
        status, body, _ = await api.request("GET", path, key=raw)
        assert status == 200, (path, body)
