"""Hostile input on the routes added with insights, categories, notifications and the console:
every JSON body, query parameter, path segment and header these routes read, with the bytes a
client can send (not UTF-8, NUL and control characters, lone surrogates spelt as JSON escapes,
over-long values, deep nesting, huge numbers, NaN/Infinity, wrong types, duplicate keys, empty
bodies, a wrong Content-Type). Every answer is a 4xx with a JSON `{error, detail}` body, sent
on a raw socket (test_hostile_input.py), and a refused write leaves no row behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import pytest

from libs.settings import Settings
from tests.integration.ingest.conftest import Api, Upstream, serve_api
from tests.integration.ingest.console.conftest import make_user
from tests.integration.ingest.test_hostile_input import KEY, Raw, http, raw_request

pytestmark = pytest.mark.integration

JSON = b"application/json"

# Hostile JSON values, spelt as they go on the wire.
VALUES: dict[str, bytes] = {
    "nul": b'"a\\u0000b"',
    "ctl": b'"a\\u0001b"',
    "newline": b'"a\\nb"',
    "lone_high": b'"\\ud800"',
    "lone_low": b'"a\\udc80"',
    "raw_ff": b'"a\xffb"',
    "bidi": b'"a\\u202eb"',
    "long": b'"' + b"a" * 70_000 + b'"',
    "bigint": b"1" + b"0" * 400,
    "big_float": b"1e400",
    "nan": b"NaN",
    "infinity": b"Infinity",
    "negative": b"-1",
    "float": b"1.5",
    "true": b"true",
    "null": b"null",
    "object": b"{}",
    "list": b"[]",
    "deep": b"[" * 5000 + b"]" * 5000,
    "deep_object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
}

# Whole bodies that are no JSON object of any route.
BODIES: dict[str, tuple[bytes, bytes | None]] = {
    "empty": (b"", JSON),
    "null": (b"null", JSON),
    "array": (b"[]", JSON),
    "string": (b'"x"', JSON),
    "number": (b"1", JSON),
    "not_utf8": (b'{"\xff": 1}', JSON),
    "bom": (b"\xef\xbb\xbf{}", JSON),
    "trailing": (b"{} x", JSON),
    "truncated": (b'{"a": ', JSON),
    "nan": (b"NaN", JSON),
    "lone_surrogate": (b'"\\ud800"', JSON),
    "deep_array": (b"[" * 5000 + b"]" * 5000, JSON),
    "deep_object": (b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON),
    "nul_byte": (b"{\x00}", JSON),
    "text_plain": (b"{}", b"text/plain"),
    "form": (b"a=b", b"application/x-www-form-urlencoded"),
    "no_type": (b"{}", None),
    "json_charset": (b"{}", b"application/json; charset=latin-1"),
    "over_64k": (b'{"a": "' + b"a" * 70_000 + b'"}', JSON),
    "over_1m": (b'{"a": "' + b"a" * 1_100_000 + b'"}', JSON),
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {job} and {user} are filled in
    # Bodies with one slot `V` for a hostile value.
    shapes: tuple[bytes, ...]


ROUTES: dict[str, Route] = {
    "category": Route(
        "PUT",
        "/api/categories/hostile-cat",
        (
            b'{"rule": V}',
            b'{"rule": {"said": [V]}}',
            b'{"rule": {"said": V}}',
            b'{"rule": {"said": ["refund"], "by": V}}',
            b'{"rule": {"said": ["refund"], "first_seconds": V}}',
            b'{"rule": {"metric": "duration", "min": V}}',
            b'{"rule": {"metric": V, "max": 1}}',
            b'{"rule": {"redacted": V}}',
            b'{"rule": {"all": [V]}}',
            b'{"rule": {"not": V}}',
            b'{"rule": {"said": ["refund"]}, "rule": V}',
            b'{"rule": {"said": ["refund"]}, "extra": V}',
            b'{"rule": {"said": ["refund"], V: 1}}',
        ),
    ),
    "notification": Route(
        "POST",
        "/api/notifications",
        (
            b'{"events": [V], "emails": ["ops@example.org"]}',
            b'{"events": V, "emails": ["ops@example.org"]}',
            b'{"events": ["failed"], "emails": [V]}',
            b'{"events": ["failed"], "emails": V}',
            b'{"events": ["category:V"], "emails": ["ops@example.org"]}',
            b'{"events": ["failed"], "campaign": V, "emails": ["ops@example.org"]}',
            b'{"events": ["failed"], "slack_url": V}',
            b'{"events": ["failed"], "emails": ["ops@example.org"], "emails": V}',
        ),
    ),
    "template": Route(
        "PUT",
        "/api/insights/template?campaign=hostile",
        (
            b'{"summary": V}',
            b'{"outcomes": [V]}',
            b'{"outcomes": V}',
            b'{"questions": [{"id": V, "text": "Was it solved?", "kind": "yes_no"}]}',
            b'{"questions": [{"id": "solved", "text": V, "kind": "yes_no"}]}',
            b'{"questions": [{"id": "solved", "text": "Solved?", "kind": V}]}',
            b'{"outcomes": ["sale"], "outcomes": V}',
        ),
    ),
    "login": Route(
        "POST",
        "/api/session",
        (
            b'{"email": V, "password": "correct horse battery"}',
            b'{"email": "nobody@example.org", "password": V}',
            b'{"email": "nobody@example.org", "password": "x", "email": V}',
        ),
    ),
    "new_user": Route(
        "POST",
        "/api/users",
        (
            b'{"email": V, "role": "viewer", "operator": true}',
            b'{"email": "hostile@example.org", "role": V, "operator": true}',
            b'{"email": "hostile@example.org", "role": "viewer", "operator": true, "password": V}',
            b'{"email": "hostile@example.org", "role": "viewer", "key": V}',
            b'{"email": "hostile@example.org", "role": "viewer", "operator": V}',
        ),
    ),
    "change_user": Route(
        "PATCH",
        "/api/users/{user}",
        (b'{"role": V}', b'{"disabled": V}', b'{"role": "viewer", "role": V}'),
    ),
    "password": Route("POST", "/api/users/{user}/password", (b'{"password": V}',)),
    "speakers": Route(
        "PUT",
        "/api/media/{job}/speakers",
        (b'{"names": V}', b'{"names": {"Speaker A": V}}', b'{"names": {V: "Mrs Jones"}}'),
    ),
    # Not new, but it reads any JSON value the same way.
    "webhook": Route("PUT", "/api/webhooks/endpoint", (b'{"url": V}',)),
}

# What a refused write must leave as it was: the route's table, whole.
TABLES = {
    "category": "categories",
    "notification": "notification_rules",
    "template": "insight_templates",
    "login": "console_sessions",
    "new_user": "console_users",
    "change_user": "console_users",
    "password": "console_users",
    "speakers": "speaker_names",
    "webhook": "api_keys",
}


def _fill(shape: bytes, value: bytes) -> bytes:
    if b"category:V" in shape:
        # Inside a string: the value's own quotes dropped (numbers and the like stay text).
        return shape.replace(b"category:V", b"category:" + value.strip(b'"'))
    if b"{V:" in shape:
        return shape.replace(b"{V:", b"{" + value + b":") if value.startswith(b'"') else shape
    return shape.replace(b"V", value)


CASES: dict[str, tuple[str, bytes, bytes | None]] = {}
for _route, _spec in ROUTES.items():
    for _body, (_raw, _type) in BODIES.items():
        CASES[f"{_route}-{_body}"] = (_route, _raw, _type)
    for _i, _shape in enumerate(_spec.shapes):
        for _value_name, _value in VALUES.items():
            CASES[f"{_route}-{_i}-{_value_name}"] = (_route, _fill(_shape, _value), JSON)


# Cases that are fine input after all (optional fields left null, a window of 1.5 s, an
# outcome with a bidi control, which only speaker names refuse): answered 2xx.
ACCEPTED = {
    "category-1-bidi",
    "category-3-bidi",
    "category-3-newline",  # `by` is collapsed on whitespace
    "category-4-float",
    "category-4-null",
    "category-5-float",
    "change_user-0-null",
    "change_user-1-null",
    "change_user-1-true",
    "new_user-2-null",
    "notification-4-big_float",
    "notification-4-float",
    "notification-4-infinity",
    "notification-4-nan",
    "notification-4-negative",
    "notification-4-null",
    "notification-4-true",
    "notification-5-bidi",
    "notification-5-null",
    "password-0-null",
    "template-0-true",
    "template-1-bidi",
    "template-2-list",
    "template-4-bidi",
    # The media type's parameters are not read; the body is ASCII JSON all the same.
    "change_user-json_charset",
    "password-json_charset",
    "template-json_charset",
}


@dataclass
class Targets:
    job: str
    user: str


@pytest.fixture(scope="module")
async def targets(api: Api, upstream: Upstream) -> Targets:
    status, body, _ = await api.submit({"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"})
    assert status == 200, body
    user = await make_user(api, key_id=None, operator=True, role="viewer")
    return Targets(job=str(body["audio_file_id"]), user=user.id)


async def _send(
    api: Api,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: bytes | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Raw:
    sent = [(b"X-API-Key", KEY), *(headers or [])]
    if content_type is not None:
        sent.append((b"Content-Type", content_type))
    answer = await raw_request(api.base_url, http(method, path, sent, body), timeout=20)
    assert answer is not None, "closed without an answer"
    return answer


def _is_error(answer: Raw) -> None:
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    error = answer.json()
    assert set(error) == {"error", "detail"} and error["error"], error


async def _snapshot(api: Api, table: str) -> str:
    digest = await api.pool.fetchval(
        f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
        f"FROM media_pipeline.{table} t"
    )
    return str(digest)


def test_every_accepted_case_exists() -> None:
    assert set(CASES) >= ACCEPTED


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_hostile_body_is_a_json_4xx_and_writes_nothing(
    api: Api, targets: Targets, case: str
) -> None:
    route_name, body, ctype = CASES[case]
    route = ROUTES[route_name]
    path = route.path.format(job=targets.job, user=targets.user)
    before = await _snapshot(api, TABLES[route_name])
    answer = await _send(api, route.method, path, body, ctype)
    if case in ACCEPTED:
        assert 200 <= answer.status < 300, answer.body[:300]
        return
    _is_error(answer)
    assert await _snapshot(api, TABLES[route_name]) == before


# A body that is fine but not declared application/json: 415 on the routes that take only JSON.
UNSUPPORTED = ("category", "template", "login", "new_user", "change_user", "password", "speakers")


@pytest.mark.parametrize("route_name", UNSUPPORTED)
@pytest.mark.parametrize(
    "content_type", [b"text/plain", None, b"application/x-www-form-urlencoded"]
)
async def test_a_json_body_sent_as_another_type_is_415(
    api: Api, targets: Targets, route_name: str, content_type: bytes | None
) -> None:
    route = ROUTES[route_name]
    path = route.path.format(job=targets.job, user=targets.user)
    body = {
        "category": b'{"rule": {"said": ["refund"]}}',
        "template": b'{"summary": true}',
        "login": b'{"email": "a@example.org", "password": "a long password"}',
        "new_user": b'{"email": "ct@example.org", "role": "viewer", "operator": true}',
        "change_user": b'{"disabled": false}',
        "password": b"{}",
        "speakers": b'{"names": {}}',
    }[route_name]
    before = await _snapshot(api, TABLES[route_name])
    answer = await _send(api, route.method, path, body, content_type)
    assert answer.status == 415, answer.body[:300]
    assert answer.json()["error"] == "unsupported_media"
    assert await _snapshot(api, TABLES[route_name]) == before


# A key named twice with values that are each fine: JSON decoders keep the last one, so a proxy
# or log reading the first would see another request. 400 `duplicate_key`, as a form field or
# query parameter sent twice is `duplicate_field`.
DUPLICATES: dict[str, bytes] = {
    "category": b'{"rule": {"said": ["refund"]}, "rule": {"said": ["cancel"]}}',
    "category_nested": b'{"rule": {"all": [{"said": ["a"], "by": "agent", "by": "customer"}]}}',
    "notification": b'{"events": ["failed"], "emails": ["a@example.org"], '
    b'"emails": ["b@example.org"]}',
    "template": b'{"outcomes": ["sale"], "outcomes": ["no sale"]}',
    "login": b'{"email": "a@example.org", "email": "b@example.org", "password": "x"}',
    "new_user": b'{"email": "dup@example.org", "role": "viewer", "role": "admin", '
    b'"operator": true}',
    "change_user": b'{"disabled": false, "disabled": true}',
    "password": b'{"password": "a long password 1", "password": "a long password 2"}',
    "speakers": b'{"names": {"Speaker A": "Ann", "Speaker A": "Bob"}}',
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
async def test_a_key_named_twice_is_a_400_and_writes_nothing(
    api: Api, targets: Targets, case: str
) -> None:
    route_name = case.split("_nested")[0]
    route = ROUTES[route_name]
    before = await _snapshot(api, TABLES[route_name])
    path = route.path.format(job=targets.job, user=targets.user)
    answer = await _send(api, route.method, path, DUPLICATES[case], JSON)
    assert answer.status == 400, answer.body[:300]
    assert answer.json()["error"] == "duplicate_key"
    assert await _snapshot(api, TABLES[route_name]) == before


# --- query strings, paths and headers ----------------------------------------------------------

UUID0 = "00000000-0000-0000-0000-000000000000"
# (method, path) -> the status answered. Query values are decoded strictly at the edge (%ff,
# %00, a name twice: 400 for every route); these are the values each route reads itself.
REQUESTS: dict[str, tuple[str, str, int]] = {
    "categories_key_unknown": ("GET", "/api/categories?key=nope", 404),
    "categories_key_nul": ("GET", "/api/categories?key=%00", 400),
    "categories_key_dup": ("GET", f"/api/categories?key={UUID0}&key={UUID0}", 400),
    "category_name_nul": ("GET", "/api/categories/a%00b", 400),
    "category_name_ff": ("GET", "/api/categories/a%ffb", 400),
    "category_name_unicode": ("GET", "/api/categories/caf%C3%A9", 400),
    "category_name_dot": ("GET", "/api/categories/.hidden", 400),
    "category_name_dotdot": ("PUT", "/api/categories/%2e%2e", 400),
    "category_name_slash": ("GET", "/api/categories/a%2fb", 400),
    "category_name_65": ("GET", "/api/categories/" + "a" * 65, 400),
    "category_name_5000": ("DELETE", "/api/categories/" + "a" * 5000, 400),
    "apply_since_huge_age": ("POST", "/api/categories/c/apply?since=" + "9" * 400 + "d", 400),
    "apply_since_exp": ("POST", "/api/categories/c/apply?since=1e400d", 400),
    "apply_since_nan": ("POST", "/api/categories/c/apply?since=NaN", 400),
    "apply_since_negative": ("POST", "/api/categories/c/apply?since=-1d", 400),
    "apply_since_year0": (
        "POST",
        "/api/categories/c/apply?since=0001-01-01T00:00:00%2B14:00",
        400,
    ),
    "apply_since_year10000": (
        "POST",
        "/api/categories/c/apply?since=9999-12-31T23:59:59-14:00",
        400,
    ),
    "apply_since_long": ("POST", "/api/categories/c/apply?since=" + "1" * 3000, 400),
    "apply_since_dup": ("POST", "/api/categories/c/apply?since=1d&since=2d", 400),
    "apply_cursor_garbage": ("POST", "/api/categories/c/apply?cursor=!!", 400),
    "apply_cursor_not_a_cursor": ("POST", "/api/categories/c/apply?cursor=eHx5", 400),
    "apply_cursor_ff": ("POST", "/api/categories/c/apply?cursor=_w", 400),
    "apply_cursor_long": ("POST", "/api/categories/c/apply?cursor=" + "A" * 1000, 400),
    "apply_unknown_category": ("POST", "/api/categories/c/apply?since=1d", 404),
    "template_campaign_empty": ("GET", "/api/insights/template?campaign=", 400),
    "template_campaign_nul": ("GET", "/api/insights/template?campaign=a%00", 400),
    "template_campaign_ff": ("GET", "/api/insights/template?campaign=%ff", 400),
    "template_campaign_long": ("PUT", "/api/insights/template?campaign=" + "a" * 300, 400),
    "template_campaign_dup": ("DELETE", "/api/insights/template?campaign=a&campaign=b", 400),
    "template_key_unknown": ("GET", "/api/insights/template?key=nope", 404),
    "template_key_nul": ("GET", "/api/insights/template?key=%00", 400),
    "enabled_missing": ("PUT", "/api/insights/enabled", 400),
    "enabled_no_key": ("PUT", "/api/insights/enabled?enabled=true", 400),
    "enabled_maybe": ("PUT", f"/api/insights/enabled?key={UUID0}&enabled=maybe", 400),
    "enabled_empty": ("PUT", f"/api/insights/enabled?key={UUID0}&enabled=", 400),
    "enabled_dup": ("PUT", f"/api/insights/enabled?key={UUID0}&enabled=true&enabled=0", 400),
    "enabled_unknown_key": ("PUT", f"/api/insights/enabled?key={UUID0}&enabled=true", 404),
    "enabled_key_long": ("PUT", "/api/insights/enabled?enabled=1&key=" + "k" * 2000, 404),
    "insights_not_uuid": ("GET", "/api/media/insights/nope", 404),
    "insights_nul": ("GET", "/api/media/insights/%00", 404),
    "insights_unknown": ("GET", f"/api/media/insights/{UUID0}", 404),
    "deliveries_rule_not_uuid": ("GET", "/api/notifications/deliveries?rule_id=x", 400),
    "deliveries_rule_nul": ("GET", "/api/notifications/deliveries?rule_id=%00", 400),
    "deliveries_rule_unknown": ("GET", f"/api/notifications/deliveries?rule_id={UUID0}", 404),
    "resend_huge": ("POST", "/api/notifications/deliveries/" + "9" * 30 + "/resend", 404),
    "resend_bigint": ("POST", "/api/notifications/deliveries/9223372036854775808/resend", 404),
    "resend_negative": ("POST", "/api/notifications/deliveries/-1/resend", 404),
    "resend_unicode_digits": ("POST", "/api/notifications/deliveries/%D9%A1/resend", 404),
    "rule_not_uuid": ("GET", "/api/notifications/nope", 404),
    "rule_test_not_uuid": ("POST", "/api/notifications/nope/test", 404),
    "rule_test_unknown": ("POST", f"/api/notifications/{UUID0}/test", 404),
    "rule_enable_unknown": ("POST", f"/api/notifications/{UUID0}/enable", 404),
    "rule_delete_nul": ("DELETE", "/api/notifications/%00", 404),
    "user_not_uuid": ("PATCH", "/api/users/nope", 404),
    "user_password_unknown": ("POST", f"/api/users/{UUID0}/password", 404),
    "audio_not_uuid": ("GET", "/api/media/nope/audio", 404),
    "speakers_unknown": ("PUT", f"/api/media/{UUID0}/speakers", 404),
    "search_category_nul": ("GET", "/api/media/search?q=hello&category=a%00", 400),
    "search_category_ff": ("GET", "/api/media/search?q=hello&category=%ff", 400),
    "search_category_long": ("GET", "/api/media/search?q=hello&category=" + "c" * 3000, 400),
    "search_category_over_label": ("GET", "/api/media/search?category=" + "c" * 300, 400),
    "search_outcome_dup": ("GET", "/api/media/search?outcome=a&outcome=b", 400),
    "search_outcome_newline": ("GET", "/api/media/search?outcome=a%0Ab", 400),
    "search_outcome_surrogate": ("GET", "/api/media/search?outcome=%ed%a0%80", 400),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
async def test_a_hostile_query_or_path_is_a_json_4xx(api: Api, case: str) -> None:
    method, path, status = REQUESTS[case]
    answer = await _send(api, method, path, b"{}" if method in ("PUT", "PATCH") else b"", JSON)
    _is_error(answer)
    assert answer.status == status, answer.body[:300]


# Range header -> the status of the audio answer: one satisfiable range 206, past the end 416,
# anything else ignored (200, the whole audio), as RFC 9110 says.
RANGES: dict[bytes, int] = {
    b"bytes=0-0": 206,
    b"bytes=-1": 206,
    b"bytes= 1 - 2 ": 206,
    b"bytes=0-" + b"9" * 19: 206,
    b"bytes=0-" + b"9" * 20: 200,
    b"bytes=" + b"9" * 20 + b"-": 200,
    b"bytes=999999999999-": 416,
    b"bytes=-0": 416,
    b"bytes=5-1": 200,
    b"bytes=0-1,2-3": 200,
    b"items=0-1": 200,
    b"bytes=": 200,
    b"bytes=-": 200,
    b"bytes=--1": 200,
    b"bytes=a-b": 200,
    b"bytes=1e3-": 200,
    b"bytes=+1-2": 200,
    b"bytes=0x10-": 200,
    "bytes=\uff10-\uff11".encode(): 200,  # fullwidth digits
    "bytes=\u0661-".encode(): 200,  # an Arabic-Indic digit
    b"bytes=\xff-": 200,
    b"=": 200,
    b"bytes=0-1" * 500: 200,
}


@pytest.mark.parametrize("value", sorted(RANGES), ids=lambda v: repr(v[:24]))
async def test_any_range_header_is_answered(api: Api, targets: Targets, value: bytes) -> None:
    answer = await _send(api, "GET", f"/api/media/{targets.job}/audio", headers=[(b"Range", value)])
    assert answer.status == RANGES[value], answer.body[:300]
    if answer.status == 416:
        assert answer.json()["error"] == "range_not_satisfiable"
        assert answer.headers["content-range"].startswith("bytes */")


# Console paths: the page (200 when the console is built, else 404), an asset 404, or aiohttp's
# own refusal; never a file from outside the built assets.
CONSOLE_PATHS = (
    "/console/../services/ingest/app.py",
    "/console/%2e%2e/%2e%2e/pyproject.toml",
    "/console/assets/..%2f..%2froutes%2fconsole.py",
    "/console/assets/%2e%2e",
    "/console/assets/%00",
    "/console/assets/a%ffb",
    "/console/%00",
    "/console/a%0d%0aSet-Cookie:%20x=1",
    "/console/" + "a" * 7000,
    "/console/" + "a/" * 3000,
    "/console//etc/passwd",
    "/console/%5c..%5c..%5cpyproject.toml",
    "/console/assets/index.html%00.js",
)


@pytest.mark.parametrize("path", CONSOLE_PATHS, ids=lambda p: p[:40])
async def test_a_hostile_console_path_serves_no_file_from_outside(api: Api, path: str) -> None:
    answer = await _send(api, "GET", path)
    assert answer.status in (200, 400, 404), answer.body[:300]
    if answer.status == 200:
        assert answer.headers["content-type"].startswith("text/html"), answer.headers
    else:
        _is_error(answer)
    assert b"[project]" not in answer.body and b"import " not in answer.body
    assert "set-cookie" not in answer.headers


# --- bodies that arrive slowly ---------------------------------------------------------------

# A JSON body each route takes, for the connection tests below.
FINE_BODIES: dict[str, bytes] = {
    "category": b'{"rule": {"said": ["a refund please"]}}',
    "notification": b'{"events": ["failed"], "emails": ["slow@example.org"]}',
    "template": b'{"outcomes": ["sale", "no sale"]}',
    "new_user": b'{"email": "slow-USER@example.org", "role": "viewer", "operator": true}',
}


def _head(method: str, path: str, length: int) -> bytes:
    head = http(method, path, [(b"X-API-Key", KEY), (b"Content-Type", JSON)])
    return head.replace(b"Content-Length: 0\r\n", b"").replace(
        b"\r\n\r\n", b"\r\nContent-Length: " + str(length).encode() + b"\r\n\r\n", 1
    )


@pytest.mark.parametrize("route_name", [*sorted(FINE_BODIES), "webhook"])
async def test_a_json_body_that_trickles_is_408(ingest_settings: Settings, route_name: str) -> None:
    async with serve_api(replace(ingest_settings, ingest_body_read_timeout=0.5)) as slow:
        route = ROUTES[route_name]
        before = await _snapshot(slow, TABLES[route_name])
        body = FINE_BODIES.get(route_name, b'{"url": "https://example.org/hook"}')
        started = time.monotonic()
        # Content-Length promises more than is sent: the rest never comes.
        answer = await raw_request(slow.base_url, _head(route.method, route.path, 1000) + body)
        assert answer is not None and answer.status == 408, answer
        assert answer.json()["error"] == "body_read_timeout"
        assert answer.headers["connection"] == "close"
        assert time.monotonic() - started < 4
        assert await _snapshot(slow, TABLES[route_name]) == before


@pytest.mark.parametrize("route_name", sorted(FINE_BODIES))
async def test_a_json_body_in_pieces_is_read_whole(api: Api, route_name: str) -> None:
    route = ROUTES[route_name]
    body = FINE_BODIES[route_name].replace(b"USER", uuid.uuid4().hex[:8].encode())
    parts = urlsplit(api.base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(_head(route.method, route.path, len(body)) + body[:10])
        await writer.drain()
        await asyncio.sleep(0.2)  # a slow client: the rest comes in a later segment
        writer.write(body[10:])
        await writer.drain()
        async with asyncio.timeout(20):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] in (b"200", b"201"), status_line
