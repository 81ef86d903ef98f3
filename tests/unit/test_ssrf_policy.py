"""Static SSRF policy: address classes, URL shapes, numeric spellings, allowlist."""

from __future__ import annotations

import ipaddress

import pytest

from libs.safehttp import (
    AllowEntry,
    BlockedUrl,
    classify_address,
    is_allowlisted,
    parse_allowlist,
    validate_url,
)


def _reason(text: str) -> str | None:
    return classify_address(ipaddress.ip_address(text))


# --- addresses -----------------------------------------------------------------

BLOCKED_V4 = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("192.0.0.9", "IETF protocol assignment"),  # ipaddress calls this one global
    ("192.88.99.1", "6to4 relay anycast"),  # ipaddress calls this one global
]

BLOCKED_V6 = [
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique local (private)"),
    ("fd12:3456::1", "unique local (private)"),
    ("fd00:ec2::254", "cloud metadata"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("fec0::1", "site-local"),  # deprecated, but ipaddress calls it global
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),  # RFC 9637; ipaddress calls it global
    ("100::1", "discard-only"),
    ("5f00::1", "SRv6 segment identifier"),
    ("2001:2::1", "IETF protocol assignment"),
    ("4000::1", "reserved"),  # outside 2000::/3
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
    ("::ffff:169.254.169.254", "IPv4-mapped IPv6"),
    ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),  # mapped is refused whatever it embeds
    ("::127.0.0.1", "IPv4-compatible IPv6"),
    ("::8.8.8.8", "IPv4-compatible IPv6"),
    ("64:ff9b::7f00:1", "NAT64 to loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 to cloud metadata"),
    ("64:ff9b::10.1.2.3", "NAT64 to private"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 of loopback"),
    ("2002:a9fe:a9fe::", "6to4 of cloud metadata"),
    ("2002:c0a8:101::1", "6to4 of private"),
    # Teredo: server 65.54.227.120, client 127.0.0.1 (stored XOR 0xffffffff).
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo via loopback"),
    # Teredo with a private server address.
    ("2001:0:a00:1::1", "Teredo via private"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "64:ff9b::808:808",  # DNS64-synthesised address of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    # Teredo with public server and client (client 8.8.8.8 XOR 0xffffffff).
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED_V4 + BLOCKED_V6)
def test_blocked_addresses(address: str, reason: str) -> None:
    assert _reason(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert _reason(address) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "255.255.255.255", "::ffff:0.0.0.0"])
def test_unspecified_and_broadcast_never_public(address: str) -> None:
    assert _reason(address) is not None


# --- URL shape -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/a.mp3", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("gopher://example.com:70/", "scheme_not_allowed"),
        ("javascript:alert(1)", "scheme_not_allowed"),
        ("//example.com/a.mp3", "scheme_not_allowed"),
        ("example.com/a.mp3", "scheme_not_allowed"),
        ("", "scheme_not_allowed"),
        ("http://user:pass@example.com/", "credentials_in_url"),
        ("http://user@example.com/", "credentials_in_url"),
        ("http://:pass@example.com/", "credentials_in_url"),
        ("http://@example.com/", "credentials_in_url"),
        ("https://a@b@example.com/", "credentials_in_url"),
        ("http:///path", "missing_host"),
        ("http:example.com", "missing_host"),
        ("http://exa mple.com/", "malformed_url"),
        ("http://example.com\t/", "malformed_url"),
        ("http://example.com/\n", "malformed_url"),
        ("http://evil.com\\@127.0.0.1/", "malformed_url"),
        ("http://[::1/", "malformed_url"),
        ("http://example.com:99999/", "malformed_url"),
        ("http://example.com:0/", "malformed_url"),
        ("http://a..b/", "malformed_url"),
        ("http://ex%41mple.com/", "malformed_url"),
        ("http://%31%32%37.0.0.1/", "non_canonical_ip"),
        ("http://[fe80::1%25eth0]/", "malformed_url"),
        ("http://-leading.example/", "malformed_url"),
        ("http://" + "a" * 64 + ".example/", "malformed_url"),
        ("http://example.com/" + "a" * 9000, "malformed_url"),
    ],
)
def test_url_shape_errors(url: str, code: str) -> None:
    with pytest.raises(BlockedUrl) as info:
        validate_url(url)
    assert info.value.code == code
    assert info.value.message


def test_blocked_url_is_value_error_with_code() -> None:
    with pytest.raises(ValueError, match="scheme_not_allowed"):
        validate_url("ftp://example.com/")


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://example.com/a.mp3", "example.com", 80),
        ("https://example.com/a.mp3?sig=abc", "example.com", 443),
        ("HTTPS://Example.COM:8443/x", "example.com", 8443),
        ("http://example.com./x", "example.com.", 80),
        ("http://8.8.8.8/a.wav", "8.8.8.8", 80),
        ("http://[2001:4860:4860::8888]:8080/", "2001:4860:4860::8888", 8080),
        ("http://xn--bcher-kva.example/", "xn--bcher-kva.example", 80),
        ("http://bücher.example/", "xn--bcher-kva.example", 80),
        ("http://my_host.example/", "my_host.example", 80),
    ],
)
def test_accepted_urls(url: str, host: str, port: int) -> None:
    checked = validate_url(url)
    assert (checked.host, checked.port) == (host, port)
    assert not checked.allowlisted


def test_fragment_is_dropped() -> None:
    assert str(validate_url("https://example.com/a.mp3#t=10").url) == "https://example.com/a.mp3"


# --- numeric spellings ---------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f000001",
        "0X7F000001",
        "0177.0.0.1",  # octal first octet
        "0177.0000.0000.0001",
        "127.1",
        "127.0.1",
        "0x7f.1",
        "0x7f.0.0.1",
        "017700000001",
        "127.000.000.001",
        "127.0.0.01",
        "0",
        "0x0",
        "1.2.3.4.5",
        "256.0.0.1",
        "127.0.0.1.",  # a trailing dot is not canonical either
        "169.254.169.254.",
        "0xa9fea9fe",  # 169.254.169.254
        "2852039166",  # 169.254.169.254
        "foo.123",  # a numeric last label makes the whole host an IPv4 to WHATWG
        "foo.0x1f",
    ],
)
def test_non_canonical_numeric_hosts_refused(host: str) -> None:
    with pytest.raises(BlockedUrl) as info:
        validate_url(f"http://{host}/a.mp3")
    assert info.value.code == "non_canonical_ip"


def test_fullwidth_digits_are_normalised_then_checked() -> None:
    # IDNA maps fullwidth digits to ASCII, giving a plain (blocked) 127.0.0.1.
    with pytest.raises(BlockedUrl) as info:
        validate_url("http://１２７.０.０.１/")
    assert info.value.code == "private_address"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[0:0:0:0:0:ffff:7f00:1]",
        "[::ffff:a9fe:a9fe]",
        "[::127.0.0.1]",
        "[fd00:ec2::254]",
        "[fe80::1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
    ],
)
def test_private_literals_and_localhost_refused(host: str) -> None:
    with pytest.raises(BlockedUrl) as info:
        validate_url(f"https://{host}:8443/a.mp3")
    assert info.value.code == "private_address"


def test_hostname_message_does_not_claim_an_address() -> None:
    with pytest.raises(BlockedUrl, match=r"169\.254\.169\.254 is a cloud metadata address"):
        validate_url("http://169.254.169.254/latest/meta-data/")


# --- allowlist -----------------------------------------------------------------


def test_parse_allowlist_forms() -> None:
    parsed = parse_allowlist(" 127.0.0.1:8080,Audio.Internal:9000\n[::1]:8443 , [0:0::1]:8443 ")
    assert parsed == frozenset(
        {
            AllowEntry("127.0.0.1", 8080),
            AllowEntry("audio.internal", 9000),
            AllowEntry("::1", 8443),
        }
    )


def test_parse_allowlist_empty() -> None:
    assert parse_allowlist("") == frozenset()
    assert parse_allowlist(" , ") == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",  # the port is mandatory
        "localhost",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        ":8080",
        "::1:8080",  # IPv6 must be bracketed
        "[::1]",
        "[::1]8080",
        "[127.0.0.1]:80",
        "[fe80::1%eth0]:80",
        "[nothex]:80",
        "127.1:8080",  # non-canonical numeric hosts are refused here too
        "2130706433:80",
        "0x7f000001:80",
        "*.example.com:443",
        "http://example.com:80",
        "bad host:80",
    ],
)
def test_parse_allowlist_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="SSRF allowlist entry"):
        parse_allowlist(text)


def test_allowlist_exempts_exact_host_and_port() -> None:
    allow = parse_allowlist("127.0.0.1:8080,audio.internal:9000,[::1]:8443")
    assert validate_url("http://127.0.0.1:8080/a.mp3", allow).allowlisted
    assert validate_url("http://AUDIO.internal:9000/a.mp3", allow).allowlisted
    assert validate_url("https://[::1]:8443/", allow).allowlisted
    assert validate_url("https://[0::0001]:8443/", allow).allowlisted
    for url in (
        "http://127.0.0.1:8081/",  # other port
        "http://127.0.0.1/",  # default port 80 is not 8080
        "http://127.0.0.2:8080/",  # other address
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]:8080/",  # same machine, different spelling
        "http://localhost:8080/",  # same machine, different name
    ):
        with pytest.raises(BlockedUrl):
            validate_url(url, allow)


def test_allowlist_default_port_follows_scheme() -> None:
    allow = parse_allowlist("10.0.0.5:443,10.0.0.6:80")
    assert validate_url("https://10.0.0.5/x", allow).allowlisted
    assert validate_url("http://10.0.0.6/x", allow).allowlisted
    with pytest.raises(BlockedUrl):
        validate_url("http://10.0.0.5/x", allow)
    with pytest.raises(BlockedUrl):
        validate_url("https://10.0.0.6/x", allow)


def test_allowlist_does_not_relax_scheme_or_credentials() -> None:
    allow = parse_allowlist("127.0.0.1:8080")
    with pytest.raises(BlockedUrl, match="credentials_in_url"):
        validate_url("http://u:p@127.0.0.1:8080/", allow)
    with pytest.raises(BlockedUrl, match="scheme_not_allowed"):
        validate_url("ftp://127.0.0.1:8080/", allow)


def test_allowlist_hostname_is_matched_not_resolved() -> None:
    allow = parse_allowlist("localhost:8080")
    assert validate_url("http://localhost:8080/", allow).allowlisted
    assert is_allowlisted("LocalHost", 8080, allow)
    assert not is_allowlisted("localhost", 8081, allow)
    assert not is_allowlisted("127.0.0.1", 8080, allow)
