"""SafeHttpClient against real aiohttp servers on 127.0.0.1.

Every server runs on an ephemeral loopback port, so each test opts in with an
allowlist entry - exactly how the embedded stack uses SSRF_ALLOWLIST. Hostile
DNS is simulated with a fake resolver placed *under* the guard.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypedDict

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from libs.safehttp import (
    BlockedUrl,
    GuardedResolver,
    SafeHttpClient,
    TooLarge,
    UpstreamError,
    parse_allowlist,
)
from libs.safehttp.resolver import PolicyRefusal

pytestmark = pytest.mark.timeout(30)

AUDIO = b"RIFF" + bytes(range(256)) * 4


class Limits(TypedDict):
    max_bytes: int
    connect_timeout: float
    read_timeout: float


SMALL: Limits = {"max_bytes": 1 << 20, "connect_timeout": 2.0, "read_timeout": 2.0}


class Upstream:
    """A throwaway HTTP server that records what reached it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.posted: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._stalled: list[web.StreamResponse] = []
        self._release: list[Callable[[], None]] = []

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"

    def redirect_url(self, to: str, status: int = 302) -> str:
        return str(URL(self.url("/redirect")).with_query(to=to, status=str(status)))

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/audio", self._audio)
        app.router.add_get("/sized/{n}", self._sized)
        app.router.add_get("/chunked/{n}", self._chunked)
        app.router.add_get("/gzip-bomb", self._gzip_bomb)
        app.router.add_get("/stall-body", self._stall_body)
        app.router.add_get("/stall-headers", self._stall)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/host", self._host)
        app.router.add_get("/set-cookie", self._set_cookie)
        app.router.add_get("/echo-cookie", self._echo_cookie)
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/answer/{n}", self._answer)
        app.router.add_post("/stall", self._stall)
        # handler_cancellation: a stalled handler ends when our client hangs up.
        self.runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        for release in self._release:
            release()
        assert self.runner is not None
        await self.runner.cleanup()

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits.append(f"{request.method} {request.path}")
        return await handler(request)

    async def _audio(self, request: web.Request) -> web.Response:
        return web.Response(body=AUDIO, content_type="audio/wav")

    async def _sized(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        remaining = int(request.match_info["n"])
        try:
            while remaining > 0:
                await resp.write(b"y" * min(1000, remaining))
                remaining -= 1000
        except ConnectionResetError:
            return resp
        await resp.write_eof()
        return resp

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        body = gzip.compress(bytes(1_000_000))
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def _wait_forever(self) -> None:
        event = asyncio.Event()
        self._release.append(event.set)
        await event.wait()

    async def _stall_body(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"z" * 10)
        await self._wait_forever()
        return resp

    async def _stall(self, request: web.Request) -> web.Response:
        await self._wait_forever()
        return web.Response(text="late")

    async def _redirect(self, request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    async def _loop(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def _host(self, request: web.Request) -> web.Response:
        return web.Response(text=request.headers["Host"])

    async def _set_cookie(self, request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.set_cookie("session", "secret-of-user-a")
        return resp

    async def _echo_cookie(self, request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Cookie", ""))

    async def _hook(self, request: web.Request) -> web.Response:
        self.posted.append(await request.read())
        return web.Response(status=302, headers={"Location": "/after-hook"}, text="moved")

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"a" * int(request.match_info["n"]))


class FakeResolver(AbstractResolver):
    """DNS as an attacker would like it: a fixed table, every call recorded."""

    def __init__(self, table: dict[str, list[str] | OSError]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port))
        answer = self.table.get(host)
        if isinstance(answer, OSError):
            raise answer
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in answer
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


ClientFactory = Callable[..., SafeHttpClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[SafeHttpClient] = []

    def factory(allowlist: str = "", resolver: AbstractResolver | None = None) -> SafeHttpClient:
        client = SafeHttpClient(parse_allowlist(allowlist), resolver=resolver)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


# --- the basic gate ----------------------------------------------------------------


async def test_loopback_blocked_by_default(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(BlockedUrl) as info:
        async with client.stream(upstream.url("/audio"), **SMALL):
            pytest.fail("must not connect")
    assert info.value.code == "private_address"
    assert upstream.hits == []


async def test_loopback_allowed_with_allowlist(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    async with client.stream(upstream.url("/audio"), **SMALL) as resp:
        assert resp.status == 200
        assert resp.url == upstream.url("/audio")
        assert resp.redirects == ()
        assert resp.content_type == "audio/wav"
        assert resp.content_length == len(AUDIO)
        chunks = [chunk async for chunk in resp.iter_chunks(chunk_size=100)]
    assert b"".join(chunks) == AUDIO
    assert resp.bytes_received == len(AUDIO)
    assert upstream.hits == ["GET /audio"]


async def test_localhost_name_blocked_even_though_it_is_the_same_server(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)  # allowlists 127.0.0.1:port, not localhost:port
    with pytest.raises(BlockedUrl, match="private_address"):
        async with client.stream(f"http://localhost:{upstream.port}/audio", **SMALL):
            pytest.fail("must not connect")
    assert upstream.hits == []


async def test_system_resolver_answer_for_localhost_is_refused() -> None:
    # The real getaddrinfo path, bypassing validate_url's localhost shortcut.
    guard = GuardedResolver(frozenset())
    with pytest.raises(PolicyRefusal) as info:
        await guard.resolve("localhost", 80)
    assert info.value.blocked.code == "private_address"
    assert "loopback" in info.value.blocked.message
    assert "127.0.0.1" not in info.value.blocked.message

    allowed = GuardedResolver(parse_allowlist("localhost:80"))
    answers = await allowed.resolve("localhost", 80)
    assert {a["host"] for a in answers} <= {"127.0.0.1", "::1"}
    await guard.close()
    await allowed.close()


# --- resolution ------------------------------------------------------------------------


async def test_hostname_resolving_to_loopback_blocked(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    dns = FakeResolver({"intranet.test": ["127.0.0.1"]})
    client = make_client(resolver=dns)
    with pytest.raises(BlockedUrl) as info:
        async with client.stream(f"http://intranet.test:{upstream.port}/audio", **SMALL):
            pytest.fail("must not connect")
    assert info.value.code == "private_address"
    assert info.value.message == "intranet.test resolves to a loopback address"
    assert dns.calls == [("intranet.test", upstream.port)]
    assert upstream.hits == []


async def test_hostname_resolving_to_metadata_blocked(make_client: ClientFactory) -> None:
    dns = FakeResolver({"meta.test": ["169.254.169.254"]})
    client = make_client(resolver=dns)
    with pytest.raises(BlockedUrl, match="cloud metadata"):
        async with client.stream("http://meta.test/latest/meta-data/", **SMALL):
            pytest.fail("must not connect")


@pytest.mark.parametrize(
    "answer",
    [
        ["8.8.8.8", "127.0.0.1"],  # one bad record poisons the answer
        ["2001:4860:4860::8888", "::ffff:127.0.0.1"],
        ["64:ff9b::a9fe:a9fe"],
    ],
)
async def test_mixed_or_embedded_answers_blocked(
    answer: list[str], make_client: ClientFactory
) -> None:
    dns = FakeResolver({"rebind.test": list(answer)})
    client = make_client(resolver=dns)
    with pytest.raises(BlockedUrl, match="private_address"):
        async with client.stream("http://rebind.test/a.mp3", **SMALL):
            pytest.fail("must not connect")


async def test_allowlisted_hostname_connects_to_the_checked_address(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    dns = FakeResolver({"audio.test": ["127.0.0.1"]})
    client = make_client(f"audio.test:{upstream.port}", resolver=dns)
    async with client.stream(f"http://audio.test:{upstream.port}/host", **SMALL) as resp:
        assert await resp.read() == f"audio.test:{upstream.port}".encode()
    # Resolved by the guard, once; aiohttp connected to that answer.
    assert dns.calls == [("audio.test", upstream.port)]


async def test_ip_literals_skip_the_resolver_but_not_the_socket_guard(
    upstream: Upstream,
) -> None:
    # Documents the aiohttp behaviour the design relies on: with a plain
    # session (no validate_url in front) an IP-literal URL never reaches the
    # resolver, and only the socket factory stops it.
    dns = FakeResolver({})
    guard = GuardedResolver(frozenset(), inner=dns)
    connector = aiohttp.TCPConnector(resolver=guard, socket_factory=guard.make_socket)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(upstream.url("/audio"))
    assert isinstance(info.value.os_error, PolicyRefusal)
    assert dns.calls == []
    assert upstream.hits == []
    await guard.close()


async def test_hex_host_reaching_the_resolver_is_still_checked(upstream: Upstream) -> None:
    # aiohttp refuses all-digit legacy IPv4 forms itself but hands "0x7f000001"
    # to the resolver, where getaddrinfo (inet_aton) reads it as 127.0.0.1.
    # validate_url refuses the spelling first; this shows the guard behind it.
    guard = GuardedResolver(frozenset())
    connector = aiohttp.TCPConnector(resolver=guard, socket_factory=guard.make_socket)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(f"http://0x7f000001:{upstream.port}/audio")
    assert isinstance(info.value.os_error, PolicyRefusal)
    assert info.value.os_error.blocked.code == "private_address"
    assert upstream.hits == []
    await guard.close()


async def test_unresolvable_host(make_client: ClientFactory) -> None:
    client = make_client(resolver=FakeResolver({}))
    with pytest.raises(BlockedUrl) as info:
        async with client.stream("http://nx.test/a.mp3", **SMALL):
            pytest.fail("must not connect")
    assert info.value.code == "unresolvable_host"


async def test_temporary_dns_failure_is_retryable(make_client: ClientFactory) -> None:
    dns = FakeResolver({"flaky.test": socket.gaierror(socket.EAI_AGAIN, "try again")})
    client = make_client(resolver=dns)
    with pytest.raises(UpstreamError) as info:
        async with client.stream("http://flaky.test/a.mp3", **SMALL):
            pytest.fail("must not connect")
    assert info.value.code == "dns_failed"
    assert info.value.retryable


# --- redirects -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_followed_and_recorded(
    status: int, upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    async with client.stream(upstream.redirect_url("/audio", status), **SMALL) as resp:
        assert await resp.read() == AUDIO
        assert resp.url == upstream.url("/audio")
        assert resp.redirects == (upstream.url("/audio"),)
    assert upstream.hits == ["GET /redirect", "GET /audio"]


async def test_redirect_to_non_allowlisted_loopback_port_refused(
    upstream: Upstream, other: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    for target in (other.url("/audio"), f"http://localhost:{other.port}/audio"):
        with pytest.raises(BlockedUrl) as info:
            async with client.stream(upstream.redirect_url(target), **SMALL):
                pytest.fail("must not follow")
        assert info.value.code == "private_address"
        assert info.value.message.startswith("redirect refused")
    assert other.hits == []


async def test_redirect_to_hostname_on_loopback_refused_at_resolution(
    upstream: Upstream, other: Upstream, make_client: ClientFactory
) -> None:
    dns = FakeResolver({"internal.test": ["127.0.0.1"]})
    client = make_client(upstream.netloc, resolver=dns)
    target = f"http://internal.test:{other.port}/audio"
    with pytest.raises(BlockedUrl, match=r"internal\.test resolves to a loopback address"):
        async with client.stream(upstream.redirect_url(target), **SMALL):
            pytest.fail("must not follow")
    assert dns.calls == [("internal.test", other.port)]
    assert other.hits == []


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "private_address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "private_address"),
        ("http://0xa9fea9fe/", "non_canonical_ip"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("http://user:pw@example.com/", "credentials_in_url"),
    ],
)
async def test_redirect_to_forbidden_target_refused(
    target: str, code: str, upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(BlockedUrl) as info:
        async with client.stream(upstream.redirect_url(target), **SMALL):
            pytest.fail("must not follow")
    assert info.value.code == code


async def test_redirect_loop_capped(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(UpstreamError) as info:
        async with client.stream(upstream.url("/loop"), max_redirects=3, **SMALL):
            pytest.fail("must give up")
    assert info.value.code == "too_many_redirects"
    assert not info.value.retryable
    assert upstream.hits == ["GET /loop"] * 4


async def test_zero_redirects_allowed(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(UpstreamError, match="too_many_redirects"):
        async with client.stream(upstream.redirect_url("/audio"), max_redirects=0, **SMALL):
            pytest.fail("must not follow")
    assert upstream.hits == ["GET /redirect"]


# --- size limits -------------------------------------------------------------------------


async def test_content_length_over_limit_refused_before_reading(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(TooLarge) as info:
        async with client.stream(
            upstream.url("/sized/1000"), max_bytes=999, connect_timeout=2, read_timeout=2
        ):
            pytest.fail("must refuse before the body")
    assert (info.value.limit, info.value.observed) == (999, 1000)
    assert info.value.code == "too_large"


async def test_body_exactly_at_limit_is_fine(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    async with client.stream(
        upstream.url("/sized/1000"), max_bytes=1000, connect_timeout=2, read_timeout=2
    ) as resp:
        assert len(await resp.read()) == 1000


async def test_streamed_body_over_limit_stops_early(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    kept: list[bytes] = []

    async def download() -> None:
        async with client.stream(
            upstream.url("/chunked/100000"), max_bytes=2500, connect_timeout=2, read_timeout=2
        ) as resp:
            assert resp.content_length is None
            assert "Content-Length" not in resp.headers
            async for chunk in resp.iter_chunks(chunk_size=1000):
                kept.append(chunk)

    with pytest.raises(TooLarge) as info:
        await download()
    assert sum(map(len, kept)) <= 2500
    assert info.value.limit == 2500
    assert info.value.observed > 2500


async def test_compressed_body_is_counted_after_decoding(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)

    async def download() -> None:
        async with client.stream(
            upstream.url("/gzip-bomb"), max_bytes=100_000, connect_timeout=2, read_timeout=2
        ) as resp:
            # The header counts compressed bytes, not what we will yield.
            assert resp.content_length is None
            await resp.read()

    with pytest.raises(TooLarge):
        await download()


# --- failures and timeouts -----------------------------------------------------------------


@pytest.mark.parametrize(("code", "retryable"), [(404, False), (403, False), (503, True)])
async def test_non_2xx_is_upstream_error(
    code: int, retryable: bool, upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(UpstreamError) as info:
        async with client.stream(upstream.url(f"/status/{code}"), **SMALL):
            pytest.fail("must not yield")
    assert (info.value.code, info.value.status, info.value.retryable) == (
        "bad_status",
        code,
        retryable,
    )


async def test_read_timeout_mid_body(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        async with client.stream(
            upstream.url("/stall-body"), max_bytes=10_000, connect_timeout=2, read_timeout=0.2
        ) as resp:
            await resp.read()
    assert info.value.code == "read_timeout"
    assert info.value.retryable
    assert time.monotonic() - started < 5


async def test_read_timeout_before_headers(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    with pytest.raises(UpstreamError) as info:
        async with client.stream(
            upstream.url("/stall-headers"), max_bytes=10_000, connect_timeout=2, read_timeout=0.2
        ):
            pytest.fail("must time out")
    assert info.value.code == "read_timeout"


async def test_total_deadline_beats_a_generous_read_timeout(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        async with client.stream(
            upstream.url("/stall-body"),
            max_bytes=10_000,
            connect_timeout=2,
            read_timeout=60,
            total_timeout=0.3,
        ) as resp:
            await resp.read()
    assert info.value.code == "timeout"
    assert time.monotonic() - started < 5


async def test_connection_refused(make_client: ClientFactory) -> None:
    # A bound but non-listening socket: the port stays ours and refuses.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = make_client(f"127.0.0.1:{port}")
        with pytest.raises(UpstreamError) as info:
            async with client.stream(f"http://127.0.0.1:{port}/a.mp3", **SMALL):
                pytest.fail("must not connect")
    assert info.value.code == "connect_failed"
    assert info.value.retryable


async def test_cookies_are_not_carried_between_requests(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    async with client.stream(upstream.url("/set-cookie"), **SMALL) as resp:
        await resp.read()
    async with client.stream(upstream.url("/echo-cookie"), **SMALL) as resp:
        assert await resp.read() == b""


async def test_proxy_environment_is_ignored(
    upstream: Upstream, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9/")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")
    client = make_client(upstream.netloc)
    async with client.stream(upstream.url("/audio"), **SMALL) as resp:
        assert await resp.read() == AUDIO


# --- webhooks ------------------------------------------------------------------------------


async def test_post_does_not_follow_302(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    result = await client.post(
        upstream.url("/hook"),
        body=b'{"event":"done"}',
        headers={"Content-Type": "application/json"},
        timeout=2,
    )
    assert result.status == 302
    assert result.headers["Location"] == "/after-hook"
    assert result.body == b"moved"
    assert not result.truncated
    assert result.latency_s >= 0
    assert upstream.posted == [b'{"event":"done"}']
    assert upstream.hits == ["POST /hook"]


async def test_post_to_blocked_destination(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(BlockedUrl, match="private_address"):
        await client.post(upstream.url("/hook"), body=b"{}", headers={}, timeout=2)
    dns = FakeResolver({"hooks.test": ["10.0.0.7"]})
    client = make_client(resolver=dns)
    with pytest.raises(BlockedUrl, match="private_address"):
        await client.post("https://hooks.test/in", body=b"{}", headers={}, timeout=2)
    assert upstream.hits == []


@pytest.mark.parametrize(("size", "truncated"), [(100_000, True), (1000, False), (999, False)])
async def test_post_reads_a_bounded_answer(
    size: int, truncated: bool, upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.netloc)
    result = await client.post(
        upstream.url(f"/answer/{size}"),
        body=b"{}",
        headers={},
        timeout=2,
        max_response_bytes=1000,
    )
    assert result.status == 200
    assert len(result.body) == min(size, 1000)
    assert result.truncated is truncated


async def test_post_timeout(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(upstream.netloc)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await client.post(upstream.url("/stall"), body=b"{}", headers={}, timeout=0.3)
    assert info.value.code in {"read_timeout", "timeout"}
    assert info.value.retryable
    assert time.monotonic() - started < 5
