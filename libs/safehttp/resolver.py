"""Connect-time enforcement of the address policy inside aiohttp's connector.

Two hooks, both on the one ``TCPConnector`` the client owns:

* ``GuardedResolver.resolve`` - the connector's resolver. It resolves a name
  once, refuses the whole answer if any address in it is blocked, and returns
  exactly the addresses it checked. aiohttp connects to those results without
  resolving again, so a DNS answer cannot change between check and connect
  (no rebinding window), and every redirect hop is checked the same way.
* ``GuardedResolver.make_socket`` - the connector's ``socket_factory``, called
  with the final (address, port) right before ``connect()``. aiohttp never
  calls the resolver for IP-literal hosts (``TCPConnector._resolve_host``
  short-circuits them), so this is the check that still sees those; it is a
  backstop behind ``validate_url``, which the client runs on every hop.

Refusals travel through aiohttp as ``PolicyRefusal`` (an ``OSError``, which is
what aiohttp and aiohappyeyeballs expect from these hooks: anything else is
swallowed by the happy-eyeballs race) and come out wrapped in
``ClientConnectorError.os_error``; the client turns them back into BlockedUrl.
"""

from __future__ import annotations

import errno
import socket

import structlog
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from libs.safehttp.errors import BlockedUrl
from libs.safehttp.policy import (
    Allowlist,
    IPAddress,
    classify_address,
    is_allowlisted,
    parse_ip,
)

log = structlog.get_logger(__name__)


class PolicyRefusal(OSError):
    """A BlockedUrl smuggled through aiohttp's connector as the OSError it expects."""

    blocked: BlockedUrl

    def __init__(self, blocked: BlockedUrl) -> None:
        super().__init__(errno.EACCES, blocked.message)
        self.blocked = blocked


class GuardedResolver(AbstractResolver):
    """Resolver + socket factory pair that only lets allowed addresses through.

    ``inner`` does the actual lookups (default: aiohttp's ThreadedResolver,
    i.e. the system's getaddrinfo with /etc/hosts and nsswitch); tests pass a
    fake one to simulate hostile DNS answers. It is closed with this resolver.
    """

    def __init__(self, allowlist: Allowlist, inner: AbstractResolver | None = None) -> None:
        self._allowlist = allowlist
        self._inner = inner if inner is not None else ThreadedResolver()
        # Addresses vouched for by an allowlisted *hostname*, so the socket
        # factory (which only sees address and port) lets them through.
        # Bounded by the allowlist's size times its DNS answers.
        self._vouched: set[tuple[IPAddress, int]] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # gaierror and friends pass through untouched: aiohttp wraps them in
        # ClientConnectorDNSError, which the client maps by errno.
        answers = await self._inner.resolve(host, port, family)
        if not answers:
            raise PolicyRefusal(BlockedUrl("unresolvable_host", f"{host} has no addresses"))

        allowlisted = is_allowlisted(host, port, self._allowlist)
        checked: list[ResolveResult] = []
        for answer in answers:
            ip = parse_ip(answer["host"])
            if ip is None:
                log.warning("ssrf.resolver_odd_answer", host=host, answer=answer["host"])
                raise PolicyRefusal(
                    BlockedUrl("unresolvable_host", f"{host} resolved to a non-address")
                )
            reason = classify_address(ip)
            if reason is not None:
                if not allowlisted:
                    # One bad address poisons the whole answer: a mixed
                    # public/private answer is the classic rebinding setup.
                    log.warning(
                        "ssrf.blocked",
                        stage="resolve",
                        host=host,
                        port=port,
                        address=str(ip),
                        reason=reason,
                    )
                    raise PolicyRefusal(
                        BlockedUrl("private_address", f"{host} resolves to a {reason} address")
                    )
                self._vouched.add((ip, port))
            checked.append(answer.copy())
        return checked

    def make_socket(self, addr_info: AddrInfoType) -> socket.socket:
        """``socket_factory`` for TCPConnector: last check before connect()."""
        family, type_, proto, _, sockaddr = addr_info
        address, port = str(sockaddr[0]), int(sockaddr[1])
        ip = parse_ip(address)
        if ip is None:
            raise PolicyRefusal(BlockedUrl("private_address", "connection target is not an IP"))
        reason = classify_address(ip)
        if (
            reason is not None
            and (ip, port) not in self._vouched
            and not is_allowlisted(str(ip), port, self._allowlist)
        ):
            log.warning("ssrf.blocked", stage="connect", address=str(ip), port=port, reason=reason)
            raise PolicyRefusal(BlockedUrl("private_address", f"{ip} is a {reason} address"))
        return socket.socket(family=family, type=type_, proto=proto)

    async def close(self) -> None:
        await self._inner.close()
