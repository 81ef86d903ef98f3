"""Hostile input at the edge: bytes HTTP client libraries refuse to send, sent on a raw socket.

Every case the app sees answers 4xx with a JSON `{error, detail}` body and a stable code;
malformed HTTP framing (control bytes in header values, a CR without LF, over-long header
lines, raw non-ASCII in the URL) is refused by aiohttp's parser before any handler runs, still
as a JSON 400 (`invalid_http`). Connection hardening: header and body read timeouts, the in-flight limit, the upload
spool. No test takes more than a few seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from libs import apikeys
from libs.settings import Settings
from services.ingest.app import make_runner
from tests.integration.ingest.conftest import WAV, Api, Upstream, serve_api, unique_prefix
from tests.stack_fixtures import API_KEY, eventually

pytestmark = pytest.mark.integration


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, str]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


async def raw_request(base_url: str, data: bytes, *, timeout: float = 5.0) -> Raw | None:
    """Send `data` as-is and read one answer; None when the server closed without one."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            return Raw(status, headers, body)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None
    finally:
        writer.close()


def http(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
    lines += [k + b": " + v for k, v in headers]
    if body or method == "POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


KEY = API_KEY.encode()
FORM = b"application/x-www-form-urlencoded"


def multipart(parts: list[bytes], boundary: bytes = b"XyZ") -> bytes:
    out = b""
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


MP = b"multipart/form-data; boundary=XyZ"

CASES: dict[str, bytes] = {
    "key_ff": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", b"tgw_\xff\xfe")]),
    "key_nul": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", b"tgw_\x00abc")]),
    "key_ctl": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", b"tgw_\x01\x7fabc")]),
    "key_utf8": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", "tgw_é😀".encode())]),
    "key_10k": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", b"a" * 10_000)]),
    "key_dup": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", KEY), (b"X-API-Key", KEY)]),
    "key_cr": http("GET", "/api/webhooks/endpoint", [(b"X-API-Key", b"tgw_a\rb")]),
    "header_100k": http("GET", "/api/webhooks/endpoint", [(b"X-Big", b"a" * 100_000)]),
    "reqid_ff": http("GET", "/healthz", [(b"X-Request-ID", b"\xff\xfe")]),
    "reqid_long": http("GET", "/healthz", [(b"X-Request-ID", b"r" * 5000)]),
    "idem_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Idempotency-Key", b"\xff"), (b"Content-Type", FORM)],
        b"url=http://127.0.0.1:1/a.wav",
    ),
    "idem_nul": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Idempotency-Key", b"a\x00b"), (b"Content-Type", FORM)],
        b"url=http://127.0.0.1:1/a.wav",
    ),
    "form_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"recording_id=%ff%fe",
    ),
    "form_raw_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"recording_id=\xff\xfe",
    ),
    "form_nul": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"recording_id=a%00b",
    ),
    "form_dup": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"recording_id=a&recording_id=b",
    ),
    "form_charset": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM + b"; charset=bogus-42")],
        b"recording_id=a",
    ),
    "form_long": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"recording_id=" + b"a" * 20_000,
    ),
    "mp_no_boundary": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", b"multipart/form-data")],
        b"--x\r\n\r\n",
    ),
    "mp_bad_boundary": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", b"multipart/form-data; boundary=\xff\x00")],
        b"--x\r\n\r\n",
    ),
    "mp_garbage": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        b"this is not multipart at all",
    ),
    "mp_truncated": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        b'--XyZ\r\nContent-Disposition: form-data; name="recording_id"\r\n\r\nabc',
    ),
    "mp_cte": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [
                b'Content-Disposition: form-data; name="recording_id"\r\n'
                b"Content-Transfer-Encoding: bogus\r\n\r\nabc"
            ]
        ),
    ),
    "mp_cte_b64": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [
                b'Content-Disposition: form-data; name="recording_id"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64"
            ]
        ),
    ),
    "mp_encoding": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [
                b'Content-Disposition: form-data; name="recording_id"\r\n'
                b"Content-Encoding: bogus\r\n\r\nabc"
            ]
        ),
    ),
    "mp_charset": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [
                b'Content-Disposition: form-data; name="recording_id"\r\n'
                b"Content-Type: text/plain; charset=bogus-42\r\n\r\nabc"
            ]
        ),
    ),
    "mp_field_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b'Content-Disposition: form-data; name="recording_id"\r\n\r\n\xff\xfe']),
    ),
    "mp_field_nul": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b'Content-Disposition: form-data; name="recording_id"\r\n\r\na\x00b']),
    ),
    "mp_dup": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [
                b'Content-Disposition: form-data; name="recording_id"\r\n\r\na',
                b'Content-Disposition: form-data; name="recording_id"\r\n\r\nb',
            ]
        ),
    ),
    "mp_name_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b'Content-Disposition: form-data; name="\xff"\r\n\r\na']),
    ),
    "mp_filename_ff": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [b'Content-Disposition: form-data; name="file"; filename="a\xff\x00.wav"\r\n\r\nRIFF']
        ),
    ),
    "mp_filename_star": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart(
            [b"Content-Disposition: form-data; name=\"file\"; filename*=bogus''%ff%00\r\n\r\nRIFF"]
        ),
    ),
    "mp_no_disposition": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b"X-Nothing: 1\r\n\r\nabc"]),
    ),
    "mp_long_header": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b"X-Long: " + b"a" * 100_000 + b"\r\n\r\nabc"]),
    ),
    "mp_nested": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([b"Content-Type: multipart/mixed; boundary=QQ\r\n\r\n--QQ\r\n\r\nx\r\n--QQ--"]),
    ),
    "webhook_form_ff": http(
        "PUT",
        "/api/webhooks/endpoint",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM)],
        b"url=%ff",
    ),
    "webhook_mp_garbage": http(
        "PUT",
        "/api/webhooks/endpoint",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        b"garbage",
    ),
    "webhook_json_ff": http(
        "PUT",
        "/api/webhooks/endpoint",
        [(b"X-API-Key", KEY), (b"Content-Type", b"application/json")],
        b'{"url": "\xff"}',
    ),
    "query_ff": http("GET", "/api/webhooks/deliveries?audio_file_id=%ff%00", [(b"X-API-Key", KEY)]),
    "query_raw_ff": http(
        "GET", b"/api/webhooks/deliveries?a=\xff".decode("latin-1"), [(b"X-API-Key", KEY)]
    ),
    "query_pct_ff": http(
        "GET", "/api/webhooks/deliveries?audio_file_id=%ff", [(b"X-API-Key", KEY)]
    ),
    "query_dup": http(
        "GET",
        "/api/media/status/00000000-0000-0000-0000-000000000000?x=1&x=2",
        [(b"X-API-Key", KEY)],
    ),
    "path_ff": http("GET", "/api/media/status/%ff%00", [(b"X-API-Key", KEY)]),
    "path_long": http("GET", "/api/media/status/" + "a" * 5000, [(b"X-API-Key", KEY)]),
    "not_found": http("GET", "/nope", []),
    "form_bad_chunk": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM), (b"Transfer-Encoding", b"chunked")],
    ).replace(b"Content-Length: 0\r\n", b"")
    + b"zz\r\nrecording_id=a\r\n0\r\n\r\n",
    "mp_bad_chunk": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP), (b"Transfer-Encoding", b"chunked")],
    ).replace(b"Content-Length: 0\r\n", b"")
    + b"5\r\n--XyZ\r\nzz\r\n",
    "form_bad_gzip": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM), (b"Content-Encoding", b"gzip")],
        b"not gzip at all",
    ),
    "mp_bad_gzip": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP), (b"Content-Encoding", b"gzip")],
        b"not gzip at all",
    ),
    "form_bogus_encoding": http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", FORM), (b"Content-Encoding", b"bogus")],
        b"recording_id=a",
    ),
    # DELETE is a route (/api/media/{id}) since jobs can be deleted; PATCH is none.
    "bad_method": http("PATCH", "/api/media/transcribe", [(b"X-API-Key", KEY)]),
}


# case -> (status, error code) the app answers.
EXPECTED: dict[str, tuple[int, str]] = {
    "key_ff": (400, "invalid_header"),
    "key_utf8": (401, "invalid_api_key"),
    "key_dup": (400, "duplicate_header"),
    "reqid_ff": (200, ""),
    "reqid_long": (200, ""),
    "idem_ff": (400, "invalid_header"),
    "form_ff": (400, "invalid_field"),
    "form_raw_ff": (400, "invalid_form"),
    "form_nul": (400, "invalid_field"),
    "form_dup": (400, "duplicate_field"),
    "form_charset": (400, "invalid_charset"),
    "form_long": (400, "field_too_long"),
    "mp_no_boundary": (400, "invalid_multipart"),
    "mp_garbage": (400, "invalid_multipart"),
    "mp_truncated": (400, "invalid_multipart"),
    "mp_cte": (400, "invalid_multipart"),
    "mp_cte_b64": (400, "invalid_multipart"),
    "mp_encoding": (404, "recording_not_found"),
    "mp_charset": (404, "recording_not_found"),
    "mp_field_ff": (400, "invalid_field"),
    "mp_field_nul": (400, "invalid_field"),
    "mp_dup": (400, "duplicate_field"),
    "mp_name_ff": (400, "invalid_field"),
    "mp_filename_ff": (400, "invalid_multipart"),
    "mp_filename_star": (400, "invalid_multipart"),
    "mp_no_disposition": (400, "exactly_one_source"),
    "mp_long_header": (400, "invalid_multipart"),
    "mp_nested": (400, "invalid_multipart"),
    "webhook_form_ff": (400, "invalid_field"),
    "webhook_mp_garbage": (400, "invalid_multipart"),
    "webhook_json_ff": (400, "invalid_json"),
    "query_ff": (400, "invalid_field"),
    "query_pct_ff": (400, "invalid_field"),
    "query_dup": (400, "duplicate_field"),
    "path_ff": (404, "not_found"),
    "path_long": (404, "not_found"),
    "not_found": (404, "not_found"),
    "form_bad_gzip": (400, "invalid_form"),
    "mp_bad_gzip": (400, "invalid_multipart"),
    # An unknown Content-Encoding is not decoded: the body is read as sent.
    "form_bogus_encoding": (409, "ambiguous_recording"),
    "bad_method": (405, "method_not_allowed"),
}
# Refused by aiohttp's HTTP parser before the app sees a request (400 `invalid_http`).
FRAMING = (
    "form_bad_chunk",
    "mp_bad_chunk",
    "key_nul",
    "key_ctl",
    "key_cr",
    "key_10k",
    "header_100k",
    "idem_nul",
    "mp_bad_boundary",
)


def _cte_part(name: str, encoding: bytes, body: bytes) -> bytes:
    """A submit whose one part (`file` or a field) declares a Content-Transfer-Encoding."""
    filename = b'; filename="call.wav"' if name == "file" else b""
    disposition = b'Content-Disposition: form-data; name="' + name.encode() + b'"' + filename
    part = disposition + b"\r\nContent-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body
    return http(
        "POST",
        "/api/media/transcribe",
        [(b"X-API-Key", KEY), (b"Content-Type", MP)],
        multipart([part]),
    )


# RFC 7578 section 4.7 deprecates Content-Transfer-Encoding in form-data: one rule for every
# part, file or field: absent, 7bit, 8bit or binary (no transformation) is read as sent;
# anything else is 400 invalid_multipart (a file part's was ignored, its bytes stored as sent).
CTE_CASES = {
    "mp_file_cte": (_cte_part("file", b"bogus", WAV), (400, "invalid_multipart")),
    "mp_file_cte_b64": (
        _cte_part("file", b"base64", base64.b64encode(WAV)),
        (400, "invalid_multipart"),
    ),
    "mp_file_cte_qp": (_cte_part("file", b"quoted-printable", WAV), (400, "invalid_multipart")),
    "mp_field_cte_b64_valid": (
        _cte_part("recording_id", b"base64", b"YWJj"),
        (400, "invalid_multipart"),
    ),
    "mp_field_cte_qp": (
        _cte_part("recording_id", b"quoted-printable", b"abc"),
        (400, "invalid_multipart"),
    ),
    "mp_file_cte_binary": (_cte_part("file", b"binary", WAV), (200, "")),
    "mp_field_cte_8bit": (_cte_part("recording_id", b"8BIT", b"abc"), (404, "recording_not_found")),
    "mp_field_cte_7bit": (
        _cte_part("recording_id", b" 7bit ", b"abc"),
        (404, "recording_not_found"),
    ),
}
for _name, (_raw, _expected) in CTE_CASES.items():
    CASES[_name] = _raw
    EXPECTED[_name] = _expected


CASES["query_raw_ff"] = http("GET", "/api/webhooks/deliveries?a=", [(b"X-API-Key", KEY)]).replace(
    b"?a= ", b"?a=\xff "
)
FRAMING += ("query_raw_ff",)


def test_every_case_is_classified() -> None:
    assert set(CASES) == set(EXPECTED) | set(FRAMING)


@pytest.mark.parametrize("case", sorted(EXPECTED))
async def test_hostile_input_is_a_json_4xx(api: Api, case: str) -> None:
    answer = await raw_request(api.base_url, CASES[case])
    assert answer is not None, "closed without an answer"
    status, code = EXPECTED[case]
    assert answer.status == status, answer.body[:300]
    body = answer.json()
    if code:
        assert body == {"error": code, "detail": body["detail"]}
    # Every answer carries a request id that is safe to log and echo.
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", answer.headers["x-request-id"])


@pytest.mark.parametrize("case", FRAMING)
async def test_malformed_framing_is_a_json_400_before_the_app(
    api: Api, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = await raw_request(api.base_url, CASES[case])
    assert answer is not None, "closed without an answer"
    assert answer.status == 400, answer.body[:300]
    body = answer.json()
    assert body["error"] == "invalid_http" and body["detail"], body
    # The client's fault: no ERROR traceback for a hostile client to fill the logs with.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_safe_request_id_is_echoed_an_unsafe_one_replaced(api: Api) -> None:
    ok = await raw_request(api.base_url, http("GET", "/healthz", [(b"X-Request-ID", b"abc-1.2:3")]))
    assert ok is not None and ok.headers["x-request-id"] == "abc-1.2:3"
    for bad in (b"\xff\xfe", b"a b", b"r" * 129, b"<script>"):
        answer = await raw_request(api.base_url, http("GET", "/healthz", [(b"X-Request-ID", bad)]))
        assert answer is not None and answer.status == 200
        fresh = answer.headers["x-request-id"]
        assert fresh.encode() != bad and re.fullmatch(r"[0-9a-f]{32}", fresh)


@pytest.mark.parametrize(
    "raw", ["", "tgw_\x00", "tgw_\udcff", "é" * 40, "😀", "a" * 10_000, "\r\n", "tgw_ a"]
)
async def test_key_lookup_never_raises_on_a_strange_key(api: Api, raw: str) -> None:
    assert await apikeys.authenticate(api.pool, raw) is None


async def test_router_errors_are_json(api: Api) -> None:
    status, body, headers = await api.request("GET", "/no/such/route")
    assert (status, body["error"]) == (404, "not_found")
    status, body, headers = await api.request("PUT", "/api/media/transcribe")
    assert (status, body["error"]) == (405, "method_not_allowed")
    # DELETE /api/media/{audio_file_id} matches this path too (and answers 404 for it).
    assert headers["Allow"] == "DELETE,POST"


# --- connection hardening --------------------------------------------------------------------


async def _closed_within(base_url: str, data: bytes, seconds: float) -> bytes:
    """Send `data`, then nothing: what the server answers before it closes the connection."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(seconds):
            return await reader.read()
    finally:
        writer.close()


async def test_dribbled_headers_are_cut_off(ingest_settings: Settings) -> None:
    async with serve_api(replace(ingest_settings, ingest_idle_timeout=0.5)) as api:
        started = time.monotonic()
        got = await _closed_within(api.base_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1", 5)
        assert got == b""
        assert time.monotonic() - started < 4


async def test_a_trickling_body_is_408(ingest_settings: Settings) -> None:
    async with serve_api(replace(ingest_settings, ingest_body_read_timeout=0.5)) as api:
        head = http(
            "POST", "/api/media/transcribe", [(b"X-API-Key", KEY), (b"Content-Type", MP)]
        ).replace(b"Content-Length: 0", b"Content-Length: 100000")
        part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        started = time.monotonic()
        answer = await raw_request(api.base_url, head + part + WAV[:1000])
        assert answer is not None and answer.status == 408, answer
        assert answer.json()["error"] == "body_read_timeout"
        assert answer.headers["connection"] == "close"
        assert time.monotonic() - started < 4
        assert _spooled(api) == []


async def test_over_the_in_flight_limit_is_503(
    ingest_settings: Settings, upstream: Upstream
) -> None:
    async with serve_api(replace(ingest_settings, ingest_max_connections=1)) as api:
        path = f"/gate/{uuid.uuid4().hex}.wav"
        upstream.gate.clear()
        held = asyncio.create_task(
            api.submit({"url": upstream.url + path, "b2_prefix": unique_prefix()})
        )
        try:
            await eventually(_async(lambda: upstream.hits[path]), timeout=5, interval=0.01)
            status, body, headers = await api.request("GET", "/api/webhooks/endpoint")
            assert (status, body["error"]) == (503, "overloaded")
            assert headers["Retry-After"] == "1"
            status, _, _ = await api.request("GET", "/healthz")
            assert status == 200
        finally:
            upstream.gate.set()
        status, body, _ = await held
        assert status == 200, body
        status, _, _ = await api.request("GET", "/api/webhooks/endpoint")
        assert status == 200


def _spooled(api: Api) -> list[Path]:
    return sorted(api.settings.ingest_spool_dir.glob("upload-*"))


async def test_spool_leftovers_are_removed_at_start(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "upload-leftover").write_bytes(b"x")
    (spool / "keep.txt").write_bytes(b"x")
    async with serve_api(replace(ingest_settings, ingest_spool_dir_override=spool)):
        assert sorted(p.name for p in spool.iterdir()) == ["keep.txt"]


async def test_no_spool_file_outlives_a_failed_upload(api: Api) -> None:
    file_part = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + WAV
    bad_after_file = [
        multipart([file_part, b'Content-Disposition: form-data; name="file"\r\n\r\nx']),
        multipart([file_part, b'Content-Disposition: form-data; name="phone"\r\n\r\n\x00']),
        multipart([file_part, b'Content-Disposition: form-data; name="x"\r\nA: \xff\r\n\r\n']),
        multipart([file_part])[: len(file_part) // 2],  # truncated mid-file
    ]
    for body in bad_after_file:
        answer = await raw_request(
            api.base_url,
            http(
                "POST", "/api/media/transcribe", [(b"X-API-Key", KEY), (b"Content-Type", MP)], body
            ),
        )
        assert answer is not None and 400 <= answer.status < 500, answer
    assert _spooled(api) == []


async def test_a_client_leaving_mid_upload_leaves_no_spool_file(api: Api) -> None:
    head = http(
        "POST", "/api/media/transcribe", [(b"X-API-Key", KEY), (b"Content-Type", MP)]
    ).replace(b"Content-Length: 0", b"Content-Length: 900000")
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    parts = urlsplit(api.base_url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head + part + WAV[:300_000])
    await writer.drain()
    await eventually(_async(lambda: _spooled(api)), timeout=5, interval=0.01)  # spooling
    writer.close()
    await writer.wait_closed()
    await eventually(_async(lambda: not _spooled(api)), timeout=5, interval=0.01)


def _async(check: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return check()

    return run


async def test_an_unexpected_error_is_a_json_500_without_details(ingest_settings: Settings) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application()
    app.router.add_get("/boom", boom)
    runner = make_runner(app, ingest_settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        answer = await raw_request(f"http://127.0.0.1:{port}", http("GET", "/boom", []))
        assert answer is not None and answer.status == 500
        assert answer.json()["error"] == "internal_error"
        assert b"secret" not in answer.body
    finally:
        await runner.cleanup()
