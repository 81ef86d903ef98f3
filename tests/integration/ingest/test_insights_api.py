"""Call insights through the real ingest app and Postgres (issue 21): GET
/api/media/insights/{id} (pending, completed, tenants, 409s), the insights and categories of
/status and the jobs list, and search's category / outcome filters."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from libs.categories import store as categories
from libs.contracts import CategoryMatch, Evidence, subjects
from libs.insights import store
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.transcript import Transcript, Utterance
from services.ingest import insights_bodies, search_bodies
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.insights.harness import insights

pytestmark = pytest.mark.integration


async def _job(api: Api, upstream: Upstream, key: str) -> str:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "campaign": "Winback"}, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _complete(api: Api, file_id: str) -> None:
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    said = Utterance(speaker="Channel 1", role="customer", start=1.0, end=2.5, text="cancel it")
    transcript = Transcript(
        text=said.text,
        language="en",
        duration=3.0,
        model="whisper-1",
        engine="openai",
        utterances=(said,),
    )
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)


async def _evaluate(api: Api, file_id: str, category: str, outcome: str) -> None:
    """What services/insights stores for a job (its store functions, in one transaction)."""
    job_id = uuid.UUID(file_id)
    match = CategoryMatch(
        name=category,
        matches=(Evidence(start=1.0, end=2.5, text="cancel it", role="customer"),),
    )
    async with api.pool.acquire() as conn, conn.transaction():
        assert await store.guard(conn, job_id) == "completed"
        assert await categories.save_matches(conn, job_id, [match])
        await store.save(
            conn,
            store.NewInsights(
                audio_file_id=job_id,
                tenant="t",
                status="completed",
                insights=insights(outcome=outcome),
                source_event_id=str(uuid.uuid4()),
            ),
        )


async def _get(api: Api, file_id: str, key: str | None) -> tuple[int, object]:
    status, body, _ = await api.request("GET", f"/api/media/insights/{file_id}", key=key)
    return status, body


async def test_insights_of_a_job_pending_then_completed_and_only_for_its_key(
    api: Api, upstream: Upstream
) -> None:
    mine, _ = await make_key(api.pool)
    theirs, _ = await make_key(api.pool)
    file_id = await _job(api, upstream, mine)
    status, body = await _get(api, file_id, mine)
    assert (status, body["error"]) == (409, "not_completed")  # type: ignore[index]
    await _complete(api, file_id)

    status, body = await _get(api, file_id, mine)
    assert status == 200, body
    pending = msgspec.convert(body, insights_bodies.InsightsAnswer)
    assert pending.status == "pending" and pending.categories == [] and pending.insights is None
    status, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=mine)
    assert shown["metadata"]["insights"] == {"status": "pending"}
    assert shown["metadata"]["categories"] == []

    category = f"cancellation-{uuid.uuid4().hex[:6]}"
    outcome = f"retained-{uuid.uuid4().hex[:6]}"
    await _evaluate(api, file_id, category, outcome)
    status, body = await _get(api, file_id, mine)
    assert status == 200, body
    done = msgspec.convert(body, insights_bodies.InsightsAnswer)
    assert done.status == "completed" and done.insights == insights(outcome=outcome)
    assert [c.name for c in done.categories] == [category]
    assert done.model == "fake-chat" and done.usage is not None and done.usage.total_tokens == 150
    assert done.updated_at is not None

    # /status and the jobs list show the status, the outcome and the categories.
    status, shown, _ = await api.request("GET", f"/api/media/status/{file_id}", key=mine)
    meta = shown["metadata"]
    assert meta["insights"] == {"status": "completed", "outcome": outcome}
    [listed_category] = meta["categories"]
    assert listed_category["name"] == category
    assert listed_category["matches"][0]["start"] == 1.0
    status, page, _ = await api.request("GET", "/api/media/jobs", key=mine)
    [item] = [j for j in page["jobs"] if j["metadata"]["audio_file_id"] == file_id]
    assert item["metadata"]["insights"]["outcome"] == outcome

    # Search filters on the category and the outcome.
    for query, found in (
        (f"category={category}", [file_id]),
        (f"outcome={outcome}", [file_id]),
        (f"category={category}&outcome=lost", []),
        ("category=nothing-matched-this", []),
    ):
        status, body, _ = await api.request("GET", f"/api/media/search?{query}", key=mine)
        assert status == 200, (query, body)
        hits = msgspec.convert(body, search_bodies.SearchPage).hits
        assert [h.audio_file_id for h in hits] == found, query
    # ... and never across keys.
    status, body, _ = await api.request("GET", f"/api/media/search?outcome={outcome}", key=theirs)
    assert status == 200 and body["hits"] == []

    # Another key: as if it did not exist; no key: 401; the operator's key sees it.
    for key, expected in ((theirs, 404), (None, 401)):
        status, _ = await _get(api, file_id, key)
        assert status == expected
    status, _ = await _get(api, str(uuid.uuid4()), mine)
    assert status == 404
    status, body = await _get(api, file_id, api.settings.api_key)
    assert status == 200 and body["status"] == "completed"  # type: ignore[index]

    # Deleted: 409, and the row is gone with the job.
    status, _, _ = await api.request("DELETE", f"/api/media/{file_id}", key=mine)
    assert status in (200, 202)
    status, body = await _get(api, file_id, mine)
    assert (status, body["error"]) == (409, "job_deleted")  # type: ignore[index]
    assert await store.load(api.pool, uuid.UUID(file_id)) is None
    assert await categories.matches_for(api.pool, uuid.UUID(file_id)) == ()


async def test_bad_ids_and_search_labels_are_refused(api: Api) -> None:
    mine, _ = await make_key(api.pool)
    status, body = await _get(api, "not-a-uuid", mine)
    assert status in (400, 404), body
    for query in ("category=" + "x" * 201, "outcome=a%00b"):
        status, body, _ = await api.request("GET", f"/api/media/search?{query}", key=mine)
        assert status == 400, (query, body)
        # A NUL never reaches the route: the edge checks refuse it first.
        assert body["error"] in ("invalid_category", "invalid_outcome", "invalid_field")


def test_the_subject_is_per_tenant() -> None:
    assert subjects.insights_ready("acme") == "transcribe.insights.ready.acme"
