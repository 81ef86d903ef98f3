"""GET /api/media/jobs: the key's own jobs, newest first, keyset pagination, filters, 4xx."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from libs import params
from services.ingest import bodies
from tests.integration.ingest.conftest import Api, Upstream, make_key

pytestmark = pytest.mark.integration


async def _job(api: Api, upstream: Upstream, key: str, **fields: str) -> str:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", **fields}
    status, body, _ = await api.submit(data, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _page(api: Api, key: str, query: str = "") -> tuple[list[str], str | None]:
    status, body, _ = await api.request("GET", f"/api/media/jobs{query}", key=key)
    assert status == 200, body
    page = msgspec.convert(body, bodies.JobList)
    return [job.metadata.audio_file_id for job in page.jobs], page.next_cursor


async def _all(api: Api, key: str, query: str = "?limit=2") -> list[str]:
    ids, cursor = await _page(api, key, query)
    while cursor is not None:
        more, cursor = await _page(api, key, f"{query}&cursor={cursor}")
        ids += more
    return ids


async def test_newest_first_in_pages_and_stable_under_inserts(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    made = [await _job(api, upstream, raw) for _ in range(5)]
    first, cursor = await _page(api, raw, "?limit=2")
    assert first == made[::-1][:2]
    assert cursor is not None
    # Jobs submitted while the client pages through do not shift or repeat later pages.
    newer = await _job(api, upstream, raw)
    rest: list[str] = []
    while cursor is not None:
        more, cursor = await _page(api, raw, f"?limit=2&cursor={cursor}")
        rest += more
    assert first + rest == made[::-1]
    assert await _all(api, raw) == [newer, *made[::-1]]
    # The last page says so; a page exactly full with nothing after it too.
    assert (await _page(api, raw, "?limit=6"))[1] is None


async def test_items_are_the_status_body(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw, phone="+14155550123", campaign="Spring")
    _, listed, _ = await api.request("GET", "/api/media/jobs", key=raw)
    _, status, _ = await api.request("GET", f"/api/media/status/{job}", key=raw)
    assert listed["jobs"] == [status]


async def test_filters(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    spring = await _job(api, upstream, raw, campaign="Spring")
    autumn = await _job(api, upstream, raw, campaign="Autumn")
    failed = await _job(api, upstream, raw, campaign="Autumn")
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'failed' WHERE id = $1", uuid.UUID(failed)
    )
    old = await _job(api, upstream, raw, campaign="Spring")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET created_at = $2 WHERE id = $1",
        uuid.UUID(old),
        long_ago,
    )
    assert await _all(api, raw, "?limit=2&campaign=Spring") == [spring, old]
    assert await _all(api, raw, "?limit=2&status=failed") == [failed]
    assert await _all(api, raw, "?limit=2&status=pending") == [autumn, spring, old]
    assert await _all(api, raw, "?limit=2&status=queued&campaign=Autumn") == [autumn]
    assert await _all(api, raw, "?limit=2&until=2020-01-02") == [old]
    assert await _all(api, raw, "?limit=2&until=2020-01-01") == []
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert await _all(api, raw, f"?limit=2&since={since}") == [failed, autumn, spring]
    assert await _all(api, raw, "?limit=2&campaign=Nope") == []


async def test_a_key_lists_only_its_own_jobs(api: Api, upstream: Upstream) -> None:
    mine_raw, _ = await make_key(api.pool)
    theirs_raw, _ = await make_key(api.pool)
    mine = await _job(api, upstream, mine_raw)
    theirs = await _job(api, upstream, theirs_raw)
    assert await _all(api, mine_raw) == [mine]
    assert await _all(api, theirs_raw) == [theirs]
    # A cursor made from another tenant's job reveals nothing of it: it is only a position.
    _, theirs_row, _ = await api.request("GET", f"/api/media/status/{theirs}", key=theirs_raw)
    created = datetime.fromisoformat(theirs_row["metadata"]["created_at"])
    cursor = params.encode_cursor(created + timedelta(seconds=1), uuid.UUID(theirs))
    assert await _all(api, mine_raw, f"?limit=2&cursor={cursor}") == [mine]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("cursor=not*a*cursor", "invalid_cursor"),
        ("cursor=bm90IGEgY3Vyc29y", "invalid_cursor"),  # base64 of "not a cursor"
        ("cursor=" + "A" * 300, "invalid_cursor"),
        ("since=yesterday", "invalid_since"),
        ("until=2026-13-01", "invalid_until"),
        ("status=done", "invalid_status"),
        ("campaign=" + "x" * 300, "invalid_campaign"),
        ("campaign=a%00b", "invalid_field"),
        ("campaign=%FF", "invalid_field"),
    ],
)
async def test_bad_parameters_are_400(api: Api, query: str, code: str) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request("GET", f"/api/media/jobs?{query}", key=raw)
    assert status == 400, body
    assert body["error"] == code


async def test_needs_a_key(api: Api) -> None:
    status, _, _ = await api.request("GET", "/api/media/jobs", key=None)
    assert status == 401


def test_cursor_round_trips() -> None:
    when = datetime(2026, 12, 1, 4, 5, 6, 123456, tzinfo=UTC)
    job = uuid.uuid4()
    assert params.parse_cursor(params.encode_cursor(when, job)) == (when, job)
