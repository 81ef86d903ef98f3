"""Which URLs and addresses user-supplied requests may reach.

Everything here is pure and synchronous: no DNS, no I/O. The resolver and the
client apply these rules at connect time; ``validate_url`` is also cheap enough
to run when a job is submitted.

Address policy: default deny for anything that is not plainly public unicast.
The ranges are spelled out below instead of trusting ``ipaddress.is_global``:
that property calls multicast, 192.0.0.0/24 (minus two hosts), 192.88.99.0/24,
fec0::/10, 3fff::/20 and every IPv4-mapped/NAT64 address "global", and its
answers changed between Python patch releases. The ``ipaddress`` flags are
still consulted, but only to block more, never to allow.

Numeric hosts: a host whose last label is a number (decimal or ``0x`` hex) is
an IPv4 literal to browsers and to ``inet_aton``, so ``127.1``, ``2130706433``,
``0x7f000001``, ``0177.0.0.1`` all mean 127.0.0.1. We do not normalise those
spellings, we refuse them outright (``non_canonical_ip``): only the canonical
dotted quad is accepted, which leaves no second parser to disagree with.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from yarl import URL

from libs.safehttp.errors import BlockedUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# Presigned object-store URLs run to a couple of KiB; anything far beyond that
# is abuse, and it ends up in logs and database rows.
MAX_URL_LENGTH: Final = 8192


class AllowEntry(NamedTuple):
    """One exempted destination: lower-case hostname or compressed IP, and port."""

    host: str
    port: int


Allowlist = frozenset[AllowEntry]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins, so the metadata endpoints are named before their enclosing
# ranges and the log says "cloud metadata" rather than "link-local".
_BLOCKED_V4: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_V4("169.254.169.254/32"), "cloud metadata"),  # AWS, GCP, Azure, OpenStack, ...
    (_V4("169.254.170.2/32"), "cloud metadata"),  # AWS ECS task credentials
    (_V4("100.100.100.200/32"), "cloud metadata"),  # Alibaba Cloud
    # Azure's WireServer is a public-looking address only reachable from inside
    # Azure VMs; it hands out extension configuration, so treat it as metadata.
    (_V4("168.63.129.16/32"), "cloud metadata"),
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_BLOCKED_V6: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_V6("fd00:ec2::254/128"), "cloud metadata"),  # AWS IMDS over IPv6
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "IETF protocol assignment"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "SRv6 segment identifier"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)

# Only 2000::/3 is handed out for global unicast; everything else is reserved,
# local or special, so it is refused without needing its own table row.
_GLOBAL_UNICAST_V6: Final = _V6("2000::/3")
_V4_MAPPED: Final = _V6("::ffff:0:0/96")
_V4_COMPATIBLE: Final = _V6("::/96")
_NAT64_WELL_KNOWN: Final = _V6("64:ff9b::/96")
# RFC 8215 local-use NAT64: the operator picks the prefix length (/48 to /96),
# so where the IPv4 sits is not knowable from the address alone. Refused.
_NAT64_LOCAL_USE: Final = _V6("64:ff9b:1::/48")
_SIX_TO_FOUR: Final = _V6("2002::/16")
_TEREDO: Final = _V6("2001::/32")

_CANONICAL_V4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    re.ASCII,
)
# What inet_aton and the WHATWG URL parser read as a number in a host label.
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+", re.ASCII)
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", re.ASCII)
_URL_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def _ipaddress_flags_reason(ip: IPAddress) -> str | None:
    # Belt and braces behind the explicit tables: if the stdlib thinks an
    # address is special, believe it even where the tables are silent.
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        return "non-global"
    return None


def _classify_v4(ip: ipaddress.IPv4Address) -> str | None:
    for net, reason in _BLOCKED_V4:
        if ip in net:
            return reason
    return _ipaddress_flags_reason(ip)


def _classify_v6(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    # A dual-stack socket connects ::ffff:a.b.c.d to a.b.c.d over IPv4, and
    # no real AAAA record is ever a mapped or compatible address: refuse both
    # whatever they embed.
    if ip in _V4_MAPPED:
        return "IPv4-mapped IPv6"
    if ip in _V4_COMPATIBLE:
        return "IPv4-compatible IPv6"
    if ip in _NAT64_LOCAL_USE:
        return "local-use NAT64"
    # The translation forms are legitimate (DNS64 synthesises 64:ff9b::/96
    # answers on IPv6-only networks), so they stand or fall with the IPv4
    # address they lead to.
    if ip in _NAT64_WELL_KNOWN:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        inner = _classify_v4(embedded)
        return f"NAT64 to {inner}" if inner else None
    if ip in _SIX_TO_FOUR:
        assert ip.sixtofour is not None
        inner = _classify_v4(ip.sixtofour)
        return f"6to4 of {inner}" if inner else None
    if ip in _TEREDO:
        assert ip.teredo is not None
        server, client = ip.teredo
        inner = _classify_v4(server) or _classify_v4(client)
        return f"Teredo via {inner}" if inner else None
    for net, reason in _BLOCKED_V6:
        if ip in net:
            return reason
    if ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return _ipaddress_flags_reason(ip)


def classify_address(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination, or None when it is one."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _classify_v4(ip)
    return _classify_v6(ip)


def parse_ip(text: str) -> IPAddress | None:
    """An address from a resolver answer or a URL host; None if it is not one.

    Only canonical IPv4 dotted quads count; IPv6 zone ids (``%eth0``) are
    dropped because they select an interface, not a different address.
    """
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    if _CANONICAL_V4.fullmatch(text):
        return ipaddress.IPv4Address(text)
    return None


def _looks_numeric(host: str) -> bool:
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    return bool(_NUMERIC_LABEL.fullmatch(last))


def _is_valid_hostname(host: str) -> bool:
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def _is_localhost(host: str) -> bool:
    # RFC 6761: these names resolve to loopback everywhere, so refuse them
    # without a DNS round trip.
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def normalise_host(host: str) -> str:
    """The form allowlist entries and URL hosts are compared in."""
    ip = parse_ip(host)
    return str(ip) if ip is not None else host.lower()


def is_allowlisted(host: str, port: int, allowlist: Allowlist) -> bool:
    """Whether exactly this host:port is exempt from the address block."""
    return bool(allowlist) and AllowEntry(normalise_host(host), port) in allowlist


def parse_allowlist(text: str) -> Allowlist:
    """Parse ``SSRF_ALLOWLIST``: ``host:port`` entries split by commas/whitespace.

    The port is mandatory (an entry exempts one service, not a machine); IPv6
    is written ``[::1]:8080``; hosts compare case-insensitively. Raises
    ValueError on anything else, so a typo fails at startup instead of
    silently allowing nothing or too much.
    """
    entries: set[AllowEntry] = set()
    for raw in text.replace(",", " ").split():
        if raw.startswith("["):
            host, sep, port_text = raw[1:].partition("]:")
            if not sep or "%" in host or ":" not in host or parse_ip(host) is None:
                raise ValueError(f"SSRF allowlist entry {raw!r}: expected [ipv6]:port")
        else:
            host, sep, port_text = raw.rpartition(":")
            if not sep or not host or ":" in host:
                raise ValueError(f"SSRF allowlist entry {raw!r}: expected host:port")
            if _looks_numeric(host) and parse_ip(host) is None:
                raise ValueError(f"SSRF allowlist entry {raw!r}: not a dotted-quad IPv4")
            if not _is_valid_hostname(host):
                raise ValueError(f"SSRF allowlist entry {raw!r}: invalid host")
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"SSRF allowlist entry {raw!r}: invalid port")
        entries.add(AllowEntry(normalise_host(host), int(port_text)))
    return frozenset(entries)


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL that passed the static checks, with what the connector will use."""

    url: URL
    scheme: str
    host: str
    port: int
    ip: IPAddress | None
    allowlisted: bool


def validate_url(url: str | URL, allowlist: Allowlist = frozenset()) -> CheckedUrl:
    """Static checks on a user-supplied URL; raises BlockedUrl.

    Covers shape, scheme, credentials, numeric spellings, IP literals and
    ``localhost`` names. Hostnames are NOT resolved here: the guarded resolver
    checks their addresses when the connection is made.
    """
    parsed, netloc = _parsed(str(url))
    host, port = _authority(parsed, netloc)
    ip = _host_ip(host)
    allowlisted = is_allowlisted(host, port, allowlist)
    if not allowlisted:
        _refuse_private(host, ip)

    return CheckedUrl(
        url=parsed.with_fragment(None),
        scheme=parsed.scheme,
        host=host,
        port=port,
        ip=ip,
        allowlisted=allowlisted,
    )


def _parsed(raw: str) -> tuple[URL, str]:
    """The URL parsed, and its raw netloc; too long, odd characters or unparsable are refused."""
    if len(raw) > MAX_URL_LENGTH:
        raise BlockedUrl("malformed_url", f"URL longer than {MAX_URL_LENGTH} characters")
    # yarl silently drops tabs/newlines and would accept spaces in the host;
    # refusing them avoids a second parser (logs, a browser) reading it
    # differently from the one that connects.
    if _URL_FORBIDDEN_CHARS.search(raw):
        raise BlockedUrl("malformed_url", "URL contains whitespace, control characters or '\\'")
    try:
        return URL(raw), urlsplit(raw).netloc
    except ValueError as exc:
        raise BlockedUrl("malformed_url", f"URL cannot be parsed: {exc}") from exc


def _authority(parsed: URL, netloc: str) -> tuple[str, int]:
    """Host and port of an http(s) URL without credentials."""
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise BlockedUrl("scheme_not_allowed", "only http and https URLs are accepted")
    # yarl drops an empty userinfo ("http://@host/"); the raw netloc does not.
    if parsed.raw_user is not None or parsed.raw_password is not None or "@" in netloc:
        raise BlockedUrl("credentials_in_url", "URLs must not contain user:password@")
    host = parsed.raw_host
    if not host:
        raise BlockedUrl("missing_host", "URL has no host")
    port = parsed.port
    if port is None or port == 0:
        raise BlockedUrl("malformed_url", "URL port must be 1-65535")
    return host, port


def _host_ip(host: str) -> IPAddress | None:
    """The host's IP when it is a literal (canonical spellings only); None for a DNS name."""
    ip: IPAddress | None = None
    if ":" in host:
        if "%" in host:
            raise BlockedUrl("malformed_url", "IPv6 zone identifiers are not accepted")
        ip = parse_ip(host)
        if ip is None:
            raise BlockedUrl("malformed_url", "invalid IPv6 address")
    elif _looks_numeric(host):
        ip = parse_ip(host)
        if ip is None:
            raise BlockedUrl(
                "non_canonical_ip", "numeric hosts must be written as a dotted quad (a.b.c.d)"
            )
    elif not _is_valid_hostname(host):
        raise BlockedUrl("malformed_url", "host is not a valid DNS name")
    return ip


def _refuse_private(host: str, ip: IPAddress | None) -> None:
    """Refuse private, loopback and other special addresses, and localhost names."""
    if ip is not None:
        reason = classify_address(ip)
        if reason is not None:
            raise BlockedUrl("private_address", f"{ip} is a {reason} address")
    elif _is_localhost(host):
        raise BlockedUrl("private_address", "localhost names resolve to loopback")
