"""Search across calls (issue #20) through the real ingest app and Postgres: who said a phrase,
in which call and when; tenants; deletion and requeue; metric filters; paging; bad input."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import msgspec
import pytest

from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.search import configs
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Utterance, Word
from services.ingest import search_bodies
from tests.integration.ingest.conftest import Api, Upstream, make_key

pytestmark = pytest.mark.integration


def _words(text: str, start: float) -> tuple[Word, ...]:
    out = []
    t = start
    for w in text.split():
        out.append(Word(start=round(t, 2), end=round(t + 0.4, 2), word=" " + w))
        t += 0.5
    return tuple(out)


def _turn(role: str, channel: int, start: float, text: str) -> Utterance:
    words = _words(text, start)
    return Utterance(
        speaker=f"Channel {channel}",
        role=role,
        channel=channel,
        start=start,
        end=words[-1].end,
        text=text,
        words=words,
    )


def _call(turns: list[Utterance], duration: float = 60.0, language: str = "en") -> Transcript:
    return Transcript(
        text=" ".join(u.text for u in turns),
        language=language,
        duration=duration,
        model="whisper-1",
        engine="openai",
        utterances=tuple(turns),
        conversation=summarize(turns, duration=duration, method="channels"),
    )


async def _job(api: Api, upstream: Upstream, key: str, campaign: str = "Spring") -> str:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "campaign": campaign}, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _complete(api: Api, file_id: str, transcript: Transcript) -> lifecycle.ProcessingJob:
    """What the transcriber does, through its own lifecycle functions (no upload needed here)."""
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)
    return job


async def _search(api: Api, key: str, **query: str) -> tuple[int, Any]:
    qs = "&".join(f"{k}={quote(v)}" for k, v in query.items())
    status, body, _ = await api.request("GET", f"/api/media/search?{qs}", key=key)
    return status, body


async def _ids(api: Api, key: str, **query: str) -> list[str]:
    status, body = await _search(api, key, **query)
    assert status == 200, body
    page = msgspec.convert(body, search_bodies.SearchPage)
    return [h.audio_file_id for h in page.hits]


@pytest.fixture
def phrase() -> str:
    # Words of this test alone: the index is shared by the package's tests.
    return f"cancel my subscription zq{uuid.uuid4().hex[:8]}"


async def test_the_customer_said_it_in_one_call_and_the_agent_in_another(
    api: Api, upstream: Upstream, phrase: str
) -> None:
    raw, _key = await make_key(api.pool)
    said_by_customer = await _job(api, upstream, raw)
    said_by_agent = await _job(api, upstream, raw)
    await _complete(
        api,
        said_by_customer,
        _call(
            [
                _turn("agent", 0, 0.0, "thank you for calling how can I help"),
                _turn("customer", 1, 4.0, f"I want to {phrase} today please"),
            ]
        ),
    )
    await _complete(
        api,
        said_by_agent,
        _call(
            [
                _turn("agent", 0, 0.0, f"you can {phrase} online"),
                _turn("customer", 1, 5.0, "thanks bye"),
            ]
        ),
    )
    marker = phrase.split()[-1]
    assert set(await _ids(api, raw, q=f'"{phrase}"')) == {said_by_customer, said_by_agent}

    status, body = await _search(api, raw, q=f'"{phrase}"', role="customer")
    assert status == 200, body
    page = msgspec.convert(body, search_bodies.SearchPage)
    [hit] = page.hits
    assert hit.audio_file_id == said_by_customer and hit.match_count == 1
    [match] = hit.matches
    assert match.role == "customer" and match.speaker == "Channel 1"
    assert match.start == pytest.approx(4.0)
    highlighted = [match.text[a:b] for a, b in match.highlights]
    assert highlighted == ["cancel", "subscription", marker]  # "my" is a stop word
    assert await _ids(api, raw, q=f'"{phrase}"', role="agent") == [said_by_agent]

    # Within the call: the word times a player jumps to (the marker is word 6: 4.0 + 6 * 0.5).
    status, body, _ = await api.request(
        "GET", f"/api/media/{said_by_customer}/search?q={quote(marker)}", key=raw
    )
    assert status == 200, body
    found = msgspec.convert(body, search_bodies.CallSearch)
    [m] = found.matches
    [(start, end)] = m.times
    assert m.text[slice(*m.highlights[0])] == marker
    assert (start, end) == (7.0, 7.4)


async def test_a_second_tenant_finds_nothing_of_the_first(
    api: Api, upstream: Upstream, phrase: str
) -> None:
    first, _ = await make_key(api.pool)
    second, _ = await make_key(api.pool)
    job = await _job(api, upstream, first)
    await _complete(api, job, _call([_turn("customer", 1, 0.0, phrase)]))
    assert await _ids(api, first, q=phrase) == [job]
    assert await _ids(api, second, q=phrase) == []
    assert await _ids(api, second) == []  # filters alone neither
    status, body, _ = await api.request(
        "GET", f"/api/media/{job}/search?q={quote(phrase)}", key=second
    )
    assert (status, body["error"]) == (404, "not_found")
    # The operator's key finds every tenant's calls.
    assert job in await _ids(api, api.settings.api_key, q=phrase)


async def test_a_deleted_call_is_gone_from_results_and_table(
    api: Api, upstream: Upstream, phrase: str
) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw)
    await _complete(api, job, _call([_turn("customer", 1, 0.0, phrase)]))
    assert await _ids(api, raw, q=phrase) == [job]
    status, body, _ = await api.request("DELETE", f"/api/media/{job}", key=raw)
    assert status == 200, body
    assert await _ids(api, raw, q=phrase) == []
    for table in ("search_calls", "search_utterances"):
        left = await api.pool.fetchval(
            f"SELECT count(*) FROM media_pipeline.{table} WHERE audio_file_id = $1",
            uuid.UUID(job),
        )
        assert left == 0, table
    status, body, _ = await api.request("GET", f"/api/media/{job}/search?q=x", key=raw)
    assert (status, body["error"]) == (409, "job_deleted")


async def test_a_requeued_call_leaves_the_index_until_it_completes_again(
    api: Api, upstream: Upstream, phrase: str
) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw)
    await _complete(api, job, _call([_turn("customer", 1, 0.0, phrase)]))
    status, body, _ = await api.request("POST", f"/api/media/rerun/{job}", key=raw)
    assert status == 200, body
    assert await _ids(api, raw, q=phrase) == []  # queued: not a completed call
    loaded = await lifecycle.load_job(api.pool, job)
    assert loaded is not None
    assert await lifecycle.mark_processing(api.pool, loaded, force=True)
    keys = transcript_keys(
        loaded.object_key, campaign=loaded.campaign_name, prefix=loaded.transcript_prefix
    )
    again = _call([_turn("agent", 0, 0.0, f"new words {phrase}")])
    assert await lifecycle.complete(api.pool, loaded, again, keys, force=True, trace_id=None)
    assert await _ids(api, raw, q=phrase, role="agent") == [job]
    assert await _ids(api, raw, q=phrase, role="customer") == []


async def test_metric_filters_campaign_dates_and_paging(
    api: Api, upstream: Upstream, phrase: str
) -> None:
    raw, _ = await make_key(api.pool)
    quiet = await _job(api, upstream, raw, campaign="X")
    busy = await _job(api, upstream, raw, campaign="Y")
    # quiet: 6 s of talk in 60 s (90% silence); busy: talk all along, the agent 2/3 of it.
    await _complete(api, quiet, _call([_turn("customer", 1, 0.0, f"hello {phrase} end")]))
    await _complete(
        api,
        busy,
        _call(
            [
                _turn("agent", 0, 0.0, " ".join(["word"] * 40) + f" {phrase}"),
                _turn("customer", 1, 22.0, " ".join(["reply"] * 20)),
            ],
            duration=33.0,
        ),
    )
    assert await _ids(api, raw, min_silence_share="0.3") == [quiet]
    assert await _ids(api, raw, max_silence_share="0.3") == [busy]
    assert await _ids(api, raw, min_talk_ratio="0.5") == [busy]  # calls with an agent only
    assert await _ids(api, raw, min_duration="40") == [quiet]
    assert await _ids(api, raw, q=phrase, campaign="Y") == [busy]
    assert await _ids(api, raw, q=phrase, since="2000-01-01", until="2001-01-01") == []
    assert await _ids(api, raw, role="customer") == [busy, quiet]  # newest first
    # Paging: one per page, every call once, in the order of a single page.
    both = await _ids(api, raw, q=phrase)
    assert set(both) == {quiet, busy}
    _, body = await _search(api, raw, q=phrase, limit="1")
    first = msgspec.convert(body, search_bodies.SearchPage)
    assert first.next_cursor
    # A call completed meanwhile (newer, same words) does not shift the next page.
    newer = await _job(api, upstream, raw)
    await _complete(api, newer, _call([_turn("customer", 1, 0.0, f"hello {phrase} end")]))
    _, body = await _search(api, raw, q=phrase, limit="1", cursor=first.next_cursor)
    second = msgspec.convert(body, search_bodies.SearchPage)
    assert [h.audio_file_id for h in first.hits + second.hits] == both


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("q=a%00b", "invalid_field"),
        ("q=a%07b", "invalid_field"),
        ("q=" + "a" * 10_000, "invalid_http"),  # longer than an HTTP request line may be
        ("q=" + "a" * 3_000, "field_too_long"),
        ("q=" + "a" * 401, "invalid_q"),
        ("q=%ff%fe", "invalid_field"),
        ("q=x&min_talk_ratio=0.8&max_talk_ratio=0.2", "invalid_min_talk_ratio"),
        ("min_duration=-1", "invalid_min_duration"),
        ("max_silence_share=2", "invalid_max_silence_share"),
        ("min_wpm=nan", "invalid_min_wpm"),
        ("min_interruptions=1.5", "invalid_min_interruptions"),
        ("role=" + "r" * 65, "invalid_role"),
        ("status=failed", "invalid_status"),
        ("since=2026-02-01&until=2026-01-01", "invalid_since"),
        ("limit=0", "invalid_limit"),
        ("cursor=bm90IGEgY3Vyc29y", "invalid_cursor"),
    ],
)
async def test_bad_input_is_a_clear_400(api: Api, query: str, code: str) -> None:
    raw, _ = await make_key(api.pool)
    status, body, _ = await api.request("GET", f"/api/media/search?{query}", key=raw)
    assert (status, body["error"]) == (400, code), body


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced',
        ":*&|!()<->",
        "a:* & !b | (c <-> d)",
        "'' \\ ;--",
        "the of and",
        "OR OR -",
        "😀 ünïcödé 中文",
        "x" * 400,
    ],
)
async def test_tsquery_syntax_is_searched_as_text(api: Api, upstream: Upstream, q: str) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw)
    await _complete(api, job, _call([_turn("customer", 1, 0.0, "hello world")]))
    status, body = await _search(api, raw, q=q)
    assert status == 200, body
    status, body, _ = await api.request("GET", f"/api/media/{job}/search?q={quote(q)}", key=raw)
    assert status == 200, body


async def test_a_literal_operator_word_is_found(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    job = await _job(api, upstream, raw)
    token = f"zq{uuid.uuid4().hex[:8]}"
    await _complete(api, job, _call([_turn("customer", 1, 0.0, f"press {token}:* now & again")]))
    assert await _ids(api, raw, q=f"{token}:*") == [job]
    assert await _ids(api, raw, q=f"({token}") == [job]


async def test_the_language_picks_the_configuration(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool)
    german = await _job(api, upstream, raw)
    unknown = await _job(api, upstream, raw)
    token = f"zq{uuid.uuid4().hex[:6]}"
    await _complete(
        api, german, _call([_turn("customer", 1, 0.0, f"die Kündigungen {token}")], language="de")
    )
    await _complete(
        api, unknown, _call([_turn("customer", 1, 0.0, f"running jumps {token}")], language="xx")
    )
    rows = await api.pool.fetch(
        "SELECT audio_file_id, config::text FROM media_pipeline.search_calls "
        "WHERE audio_file_id = ANY($1::uuid[])",
        [uuid.UUID(german), uuid.UUID(unknown)],
    )
    assert {str(r["audio_file_id"]): r["config"] for r in rows} == {
        german: "german",
        unknown: "simple",
    }
    assert await _ids(api, raw, q=f"Kündigung {token}") == [german]  # stemmed in German
    assert await _ids(api, raw, q=f"running {token}") == [unknown]
    assert await _ids(api, raw, q=f"run {token}") == []  # simple: no stemming


async def test_a_key_configuration_wins_over_the_language(api: Api, upstream: Upstream) -> None:
    raw, key = await make_key(api.pool)
    await configs.set_for_key(api.pool, uuid.UUID(key.id), "simple")
    job = await _job(api, upstream, raw)
    token = f"zq{uuid.uuid4().hex[:6]}"
    await _complete(api, job, _call([_turn("customer", 1, 0.0, f"cancelled {token}")]))
    assert await _ids(api, raw, q=f"cancel {token}") == []
    assert await _ids(api, raw, q=f"cancelled {token}") == [job]


async def test_search_is_documented(api: Api) -> None:
    status, doc, _ = await api.request("GET", "/openapi.json", key=None)
    assert status == 200
    assert (
        "/api/media/search" in doc["paths"] and "/api/media/{audio_file_id}/search" in doc["paths"]
    )
    assert "SearchPage" in doc["components"]["schemas"]
