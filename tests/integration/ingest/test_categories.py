"""Categories (issue #21) through the real ingest app and Postgres: PUT/GET/DELETE/list, bad
rules (400 with the path), names and bodies of any bytes, tenants and the operator's ?key=,
per-key limits, apply on past calls from the search index, and a job's matches going with its
DELETE and requeue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from libs.categories import apply as category_apply
from libs.categories import rules, store
from libs.categories.call import Call
from libs.categories.evaluate import evaluate
from libs.categories.rules import Category
from libs.contracts import CategoryMatch, Evidence
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.redaction import RedactionRecord
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Utterance
from services.ingest import category_bodies
from tests.integration.ingest.conftest import Api, Upstream, bootstrap_key_id, make_key
from tests.stack_fixtures import API_KEY

pytestmark = pytest.mark.integration

CANCEL = {"said": ["cancel my subscription", "close my account"], "by": "customer"}
NO_NOTICE = {
    "not_said": ["this call is recorded", "this call may be recorded"],
    "by": "agent",
    "first_seconds": 30,
}


def _turn(role: str, start: float, end: float, text: str) -> Utterance:
    channel = 0 if role == "agent" else 1
    return Utterance(
        speaker=f"Channel {channel}", role=role, channel=channel, start=start, end=end, text=text
    )


def _call(turns: list[Utterance], duration: float = 120.0) -> Transcript:
    return Transcript(
        text=" ".join(u.text for u in turns),
        language="en",
        duration=duration,
        model="whisper-1",
        engine="openai",
        utterances=tuple(turns),
        conversation=summarize(turns, duration=duration, method="channels"),
    )


CANCELLING = _call(
    [
        _turn("agent", 0.0, 4.0, "Hello, thanks for calling. How can I help?"),
        _turn("customer", 5.37, 9.41, "I want to cancel my subscription, please."),
        _turn("agent", 60.0, 63.0, "Done. Your card [CREDIT_CARD] will not be charged."),
    ]
)
NOTICED = _call(
    [
        _turn("agent", 0.0, 4.0, "This call may be recorded. How can I help?"),
        _turn("customer", 5.0, 9.0, "I want to close my account."),
    ]
)


async def _job(api: Api, upstream: Upstream, key: str) -> str:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "campaign": "Spring"}, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _complete(
    api: Api, file_id: str, transcript: Transcript, cards: int = 0
) -> lifecycle.ProcessingJob:
    """What the transcriber does, through its own lifecycle functions."""
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    redaction = RedactionRecord(
        policy="credit_card",
        counts={"credit_card": cards},
        spans=(),
        timing="segments",
        dropped_metadata=(),
    )
    assert await lifecycle.complete(
        api.pool, job, transcript, keys, force=False, trace_id=None, redaction=redaction
    )
    return job


async def _put(api: Api, key: str, name: str, rule: Any, query: str = "") -> tuple[int, Any]:
    status, body, _ = await api.request(
        "PUT", f"/api/categories/{name}{query}", key=key, json={"rule": rule}
    )
    return status, body


async def _matches(api: Api, file_id: str) -> dict[str, list[dict[str, Any]]]:
    found = await store.matches_for(api.pool, uuid.UUID(file_id))
    return {m.name: [msgspec.to_builtins(e) for e in m.matches] for m in found}


async def test_put_get_list_delete(api: Api) -> None:
    raw, key = await make_key(api.pool)
    status, body = await _put(api, raw, "cancel", CANCEL)
    assert status == 201, body
    created = msgspec.convert(body, category_bodies.CategoryBody)
    assert created.name == "cancel" and created.rule == CANCEL
    status, body = await _put(api, raw, "cancel", {**CANCEL, "by": "any"})
    assert status == 200, body
    assert body["rule"] == {"said": CANCEL["said"]}  # canonical: by=any is the default
    assert body["created_at"] == created.created_at and body["updated_at"] > created.updated_at
    assert (await _put(api, raw, "no-notice", NO_NOTICE))[0] == 201

    status, body, _ = await api.request("GET", "/api/categories/no-notice", key=raw)
    assert status == 200 and body["rule"] == {**NO_NOTICE, "first_seconds": 30.0}
    status, body, _ = await api.request("GET", "/api/categories", key=raw)
    listed = msgspec.convert(body, category_bodies.CategoryList)
    assert status == 200 and listed.api_key_id == key.id
    assert [c.name for c in listed.categories] == ["cancel", "no-notice"]
    assert listed.max_categories == rules.MAX_CATEGORIES_PER_KEY

    status, body, _ = await api.request("DELETE", "/api/categories/cancel", key=raw)
    assert status == 200 and body == {"name": "cancel", "deleted": True}
    for method in ("GET", "DELETE"):
        status, body, _ = await api.request(method, "/api/categories/cancel", key=raw)
        assert (status, body["error"]) == (404, "not_found"), method
    status, body, _ = await api.request("POST", "/api/categories/cancel/apply", key=raw)
    assert (status, body["error"]) == (404, "not_found")
    status, body, _ = await api.request("GET", "/api/categories", key=raw)
    assert [c["name"] for c in body["categories"]] == ["no-notice"]


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        ({"all": [{"said": ["a"]}, {"said": ["b"], "by": 3}]}, "all[1].by: "),
        ({"any": [{"not": {"said": ["ok", "\x00"]}}]}, "any[0].not.said[1]: "),
        ({"metric": "loudness", "min": 1}, "metric: must be one of duration, talk_ratio"),
        ({"redacted": "password"}, "redacted: "),
        ({"said": ["a"], "when": 1}, "when: unknown option of 'said'"),
        ([], "rule: must be an object"),
    ],
)
async def test_a_bad_rule_is_400_with_the_path_and_nothing_is_written(
    api: Api, rule: Any, detail: str
) -> None:
    raw, _ = await make_key(api.pool)
    status, body = await _put(api, raw, "bad", rule)
    assert (status, body["error"]) == (400, "invalid_rule"), body
    assert body["detail"].startswith(detail), body
    status, body, _ = await api.request("GET", "/api/categories/bad", key=raw)
    assert status == 404


async def test_bodies_and_names_of_any_bytes(api: Api) -> None:
    raw, _ = await make_key(api.pool)
    for data, code in [
        (b"\xff\xfe{not json", "invalid_json"),
        (b'{"rule": {"said": ["a"]}', "invalid_json"),
        (b'{"rule": [1]}', "invalid_rule"),
        (b'{"rul": {"said": ["a"]}}', "invalid_body"),
        (b'{"rule": {"said": ["a"]}, "extra": 1}', "invalid_body"),
        (b"", "invalid_json"),
        (b'{"rule": {"said": ["\\ud800x"]}}', None),
    ]:
        status, body, _ = await api.request(
            "PUT",
            "/api/categories/x",
            key=raw,
            data=data,
            headers={"Content-Type": "application/json"},
        )
        assert status == 400, (data, body)
        if code:
            assert body["error"] == code, (data, body)
    big = {"said": ["word " * 39] * 50}
    status, body = await _put(api, raw, "x", {"any": [big] * 7})
    assert status == 413, body
    for name in ("-x", "a%20b", "%C3%A9t%C3%A9", "x" * 65, "a%00b", "a%0Ab", ".x", "a%FFb"):
        for method in ("PUT", "GET", "DELETE"):
            status, body, _ = await api.request(
                method, f"/api/categories/{name}", key=raw, json={"rule": CANCEL}
            )
            assert (status, body["error"]) == (400, "invalid_category_name"), (name, method)
    status, body, _ = await api.request("GET", "/api/categories?key=nope", key=raw)
    assert (status, body["error"]) == (403, "not_operator")  # another key's hint, maybe
    status, body, _ = await api.request("GET", "/api/categories?key=nope", key=API_KEY)
    assert (status, body["error"]) == (404, "no_such_key")
    status, body, _ = await api.request("GET", "/api/categories", key=None)
    assert status == 401


async def test_tenants_and_the_operators_key(api: Api) -> None:
    raw_a, key_a = await make_key(api.pool)
    raw_b, key_b = await make_key(api.pool)
    assert (await _put(api, raw_a, "cancel", CANCEL))[0] == 201
    status, body, _ = await api.request("GET", "/api/categories/cancel", key=raw_b)
    assert status == 404
    status, body, _ = await api.request("GET", "/api/categories", key=raw_b)
    assert body["categories"] == []
    for method in ("GET", "PUT", "DELETE"):
        status, body, _ = await api.request(
            method, f"/api/categories/cancel?key={key_a.id}", key=raw_b, json={"rule": CANCEL}
        )
        assert (status, body["error"]) == (403, "not_operator"), method
    # A key naming itself is fine.
    status, body, _ = await api.request("GET", f"/api/categories?key={key_b.id}", key=raw_b)
    assert status == 200 and body["api_key_id"] == key_b.id
    # The operator's key manages any key's categories.
    status, body, _ = await api.request("GET", f"/api/categories?key={key_a.id}", key=API_KEY)
    assert status == 200 and [c["name"] for c in body["categories"]] == ["cancel"]
    status, body = await _put(api, API_KEY, "notice", NO_NOTICE, f"?key={key_a.id}")
    assert status == 201, body
    status, body, _ = await api.request("GET", "/api/categories/notice", key=raw_a)
    assert status == 200
    status, body, _ = await api.request("GET", "/api/categories", key=API_KEY)
    assert body["api_key_id"] == str(await bootstrap_key_id(api))
    assert "notice" not in [c["name"] for c in body["categories"]]
    status, body, _ = await api.request("GET", f"/api/categories?key={uuid.uuid4()}", key=API_KEY)
    assert (status, body["error"]) == (404, "no_such_key")
    # ... by the key's hint too, as every route with ?key= does.
    status, body, _ = await api.request("GET", f"/api/categories?key={key_a.key_hint}", key=API_KEY)
    assert status == 200 and body["api_key_id"] == key_a.id


async def test_limits_per_key(api: Api) -> None:
    raw, key = await make_key(api.pool)
    many = {"said": [f"phrase {i}" for i in range(rules.MAX_PHRASES_PER_RULE)]}
    full = {"any": [many] * (rules.MAX_PHRASES // rules.MAX_PHRASES_PER_RULE)}
    per_category = rules.MAX_PHRASES
    for i in range(rules.MAX_PHRASES_PER_KEY // per_category):
        assert (await _put(api, raw, f"c{i}", full))[0] == 201
    status, body = await _put(api, raw, "one-more", {"said": ["x"]})
    assert (status, body["error"]) == (409, "too_many_phrases"), body
    # Replacing one counts its new phrases instead of its old ones.
    assert (await _put(api, raw, "c0", {"said": ["x"]}))[0] == 200
    assert (await _put(api, raw, "one-more", {"said": ["x"]}))[0] == 201
    # Categories: fill up to the limit directly, then the API refuses one more.
    async with api.pool.acquire() as conn:
        existing = len(await store.for_key(conn, uuid.UUID(key.id)))
        for i in range(rules.MAX_CATEGORIES_PER_KEY - existing):
            await store.put(
                conn, uuid.UUID(key.id), f"m{i}", rules.parse({"metric": "wpm", "min": 1})
            )
    status, body = await _put(api, raw, "too-many", {"metric": "wpm", "min": 1})
    assert (status, body["error"]) == (409, "too_many_categories"), body
    assert (await _put(api, raw, "m0", {"metric": "wpm", "min": 2}))[0] == 200


async def test_apply_evaluates_past_calls_from_the_index(api: Api, upstream: Upstream) -> None:
    raw, key = await make_key(api.pool)
    other_raw, _ = await make_key(api.pool)
    cancelling = await _job(api, upstream, raw)
    noticed = await _job(api, upstream, raw)
    queued = await _job(api, upstream, raw)
    foreign = await _job(api, upstream, other_raw)
    await _complete(api, cancelling, CANCELLING, cards=1)
    await _complete(api, noticed, NOTICED)
    await _complete(api, foreign, CANCELLING)
    # A match of another category stays whatever apply does.
    kept = CategoryMatch(name="kept", matches=())
    async with api.pool.acquire() as conn:
        assert await store.save_matches(conn, uuid.UUID(cancelling), [kept])
        assert not await store.save_matches(conn, uuid.UUID(queued), [kept])  # not completed

    both = {"all": [CANCEL, NO_NOTICE, {"redacted": "credit_card"}]}
    assert (await _put(api, raw, "churn", both))[0] == 201
    status, body, _ = await api.request("POST", "/api/categories/churn/apply?since=1d", key=raw)
    assert status == 200, body
    assert body["evaluated"] == 2 and body["matched"] == 1 and body["skipped"] == 0, body
    assert body["next_cursor"] is None
    evidence = {
        "start": 5.37,  # stored as real in the index: read back to the millisecond
        "end": 9.41,
        "text": "I want to cancel my subscription, please.",
        "role": "customer",
        "speaker": "Channel 1",
    }
    assert await _matches(api, cancelling) == {"churn": [evidence], "kept": []}
    # What a live evaluation of the transcript gives (the insights service's path).
    live = Call.from_transcript(CANCELLING, CANCELLING.conversation, {"credit_card": 1})
    [churn] = evaluate([Category(name="churn", rule=rules.parse(both))], live)
    assert [msgspec.to_builtins(e) for e in churn.matches] == [evidence]
    assert await _matches(api, noticed) == {}
    assert await _matches(api, queued) == {} and await _matches(api, foreign) == {}

    # A changed rule, applied again: the match goes (the other category's stays).
    assert (await _put(api, raw, "churn", {"all": [CANCEL, {"redacted": "ssn"}]}))[0] == 200
    status, body, _ = await api.request(
        "POST", f"/api/categories/churn/apply?since={datetime.now(UTC).date()}", key=raw
    )
    assert status == 200 and (body["evaluated"], body["matched"]) == (2, 0), body
    assert await _matches(api, cancelling) == {"kept": []}
    # Calls created before `since` are left alone.
    assert (await _put(api, raw, "churn", CANCEL))[0] == 200
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    status, body, _ = await api.request(
        "POST", f"/api/categories/churn/apply?since={future}", key=raw
    )
    assert status == 200 and body["evaluated"] == 0, body
    # (A control character in any query value is the edge's `invalid_field`.)
    for bad, code in [("yesterday", "invalid_since"), ("1d\x00", "invalid_field")]:
        status, body, _ = await api.request(
            "POST", "/api/categories/churn/apply", key=raw, params={"since": bad}
        )
        assert (status, body["error"]) == (400, code), bad
    status, body, _ = await api.request(
        "POST", "/api/categories/churn/apply?cursor=%25%25", key=raw
    )
    assert (status, body["error"]) == (400, "invalid_cursor")

    # Bounded: one call per request, going on with the cursor, newest first.
    category = await store.get(api.pool, uuid.UUID(key.id), "churn")
    assert category is not None
    since = datetime.now(UTC) - timedelta(days=1)
    first = await category_apply.apply(api.pool, uuid.UUID(key.id), category, since, max_calls=1)
    # (The newest, `noticed`: its customer asked to close the account.)
    assert (first.evaluated, first.matched) == (1, 1) and first.after is not None
    second = await category_apply.apply(
        api.pool, uuid.UUID(key.id), category, since, after=first.after, max_calls=1
    )
    # Nothing older is left: no cursor.
    assert (second.evaluated, second.matched, second.after) == (1, 1, None)
    assert list(await _matches(api, cancelling)) == ["churn", "kept"]
    assert list(await _matches(api, noticed)) == ["churn"]


async def test_a_job_not_in_the_index_is_skipped(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw)
    await _complete(api, job, CANCELLING)
    await api.pool.execute(
        "DELETE FROM media_pipeline.search_calls WHERE audio_file_id = $1", uuid.UUID(job)
    )
    assert (await _put(api, raw, "nothing-said", {"not_said": ["hello"]}))[0] == 201
    status, body, _ = await api.request("POST", "/api/categories/nothing-said/apply", key=raw)
    assert status == 200 and (body["evaluated"], body["skipped"]) == (0, 1), body
    assert await _matches(api, job) == {}


async def test_matches_go_with_the_job_and_with_the_category(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    other_raw, _ = await make_key(api.pool)
    secret = f"secret words {uuid.uuid4().hex}"
    match = CategoryMatch(
        name="cancel", matches=(Evidence(start=1.0, end=2.0, text=secret, role="customer"),)
    )
    deleted, requeued, kept, foreign = [
        await _job(api, upstream, k) for k in (raw, raw, raw, other_raw)
    ]
    for job in (deleted, requeued, kept, foreign):
        await _complete(api, job, CANCELLING)
        async with api.pool.acquire() as conn:
            assert await store.save_matches(conn, uuid.UUID(job), [match])
    assert await _matches(api, deleted) == {"cancel": [msgspec.to_builtins(match.matches[0])]}

    status, body, _ = await api.request("DELETE", f"/api/media/{deleted}", key=raw)
    assert status == 200, body
    assert await _matches(api, deleted) == {}
    async with api.pool.acquire() as conn:  # a late write to a deleted job does nothing
        assert not await store.save_matches(conn, uuid.UUID(deleted), [match])
        assert not await store.replace_match(conn, uuid.UUID(deleted), "cancel", match)
    status, body, _ = await api.request("POST", f"/api/media/rerun/{requeued}?force=true", key=raw)
    assert status in (200, 202), body
    assert await _matches(api, requeued) == {}

    # Deleting the category removes its matches on the key's calls only.
    assert (await _put(api, raw, "cancel", CANCEL))[0] == 201
    assert (await _put(api, other_raw, "cancel", CANCEL))[0] == 201
    status, _, _ = await api.request("DELETE", "/api/categories/cancel", key=raw)
    assert status == 200
    assert await _matches(api, kept) == {}
    assert list(await _matches(api, foreign)) == ["cancel"]
