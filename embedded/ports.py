"""Free loopback TCP ports for the embedded servers.

Ports are drawn at random from *below* the kernel's ephemeral range rather than by binding
port 0: the kernel hands ephemeral ports to outgoing connections too, so a port it once gave us
can be sitting under a client socket by the time a stopped server wants it back. Random picks
also keep concurrent test runs on one machine from racing for the same few ports.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Collection
from pathlib import Path

LOOPBACK = "127.0.0.1"

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default; used when /proc is not there (macOS, containers without procfs).
_DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
# Below this are many well-known and registered service ports.
_LOWEST_PORT = 10_000
_HIGHEST_PORT = 65_535
_ATTEMPTS_PER_PORT = 200


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's ephemeral (outgoing connection) port range, inclusive."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL_RANGE
    return low, high


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """True if a server could bind ``host:port`` now.

    The probe sets SO_REUSEADDR like the servers do (Go and Postgres both), so connections
    lingering in TIME_WAIT after a server stopped do not count as taken, while listeners and
    client sockets using the port still do.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _candidate_ranges() -> list[range]:
    low, high = ephemeral_port_range()
    ranges = [range(_LOWEST_PORT, low), range(high + 1, _HIGHEST_PORT + 1)]
    return [r for r in ranges if len(r) > 0]


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _random_candidate(ranges: list[range], total: int) -> int:
    index = secrets.randbelow(total)
    for candidates in ranges:
        if index < len(candidates):
            return candidates[index]
        index -= len(candidates)
    raise AssertionError("index is below the total length of the ranges")


def free_ports(count: int, host: str = LOOPBACK, exclude: Collection[int] = ()) -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now (not reserved: bind soon)."""
    ranges = _candidate_ranges()
    total = sum(len(r) for r in ranges)
    chosen: list[int] = []
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if total == 0 or attempts > _ATTEMPTS_PER_PORT * count:
            # Ephemeral range covers (almost) everything: let the kernel choose.
            port = _kernel_port(host)
        else:
            port = _random_candidate(ranges, total)
        if port in chosen or port in exclude or not is_port_free(port, host):
            continue
        chosen.append(port)
    return chosen


def free_port(host: str = LOOPBACK, exclude: Collection[int] = ()) -> int:
    """One port that is free on ``host`` right now."""
    return free_ports(1, host, exclude)[0]
