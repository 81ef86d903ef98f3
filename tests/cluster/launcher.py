"""A JetStream cluster of real nats-server processes on loopback, for the cluster tests.

Each node is an embedded.nats.NatsServer with a cluster port and routes to its peers;
all nodes start together, since a clustered JetStream reports healthy only once a quorum is up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from embedded.nats import NatsServer
from embedded.ports import LOOPBACK, free_ports
from embedded.supervisor import EmbeddedServer, LaunchSpec, find_binary


class ClusterNode(NatsServer):
    def __init__(
        self,
        data_dir: Path,
        *,
        name: str,
        cluster_name: str,
        client_port: int,
        monitor_port: int,
        cluster_port: int,
        peers: list[int],
    ) -> None:
        EmbeddedServer.__init__(
            self,
            data_dir,
            ports={"client": client_port, "monitor": monitor_port, "cluster": cluster_port},
            binary=find_binary("nats-server"),
            startup_timeout=60.0,
        )
        self.server_name = name
        self._cluster_name = cluster_name
        self._peers = peers

    async def _prepare(self) -> LaunchSpec:
        config = self.data_dir / "nats-cluster.conf"
        routes = "\n".join(f"    nats-route://{LOOPBACK}:{p}" for p in self._peers)
        listen = json.dumps(f"{LOOPBACK}:{self.port}")
        monitor = json.dumps(f"{LOOPBACK}:{self._port('monitor')}")
        cluster = json.dumps(f"{LOOPBACK}:{self._port('cluster')}")
        config.write_text(
            f"server_name: {json.dumps(self.server_name)}\n"
            f"listen: {listen}\n"
            f"http: {monitor}\n"
            f"jetstream {{\n  store_dir: {json.dumps(str(self.data_dir))}\n}}\n"
            "cluster {\n"
            f"  name: {json.dumps(self._cluster_name)}\n"
            f"  listen: {cluster}\n"
            f"  routes: [\n{routes}\n  ]\n"
            "}\n"
        )
        return LaunchSpec(argv=[str(self.binary), "-c", str(config)], cwd=self.data_dir)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the peers, no flush; what a crashed machine looks like."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)


class NatsCluster:
    def __init__(self, base_dir: Path, size: int = 3, *, cluster_name: str = "transcribe") -> None:
        ports = free_ports(3 * size)
        cluster_ports = ports[2 * size :]
        self.nodes = [
            ClusterNode(
                base_dir / f"n{i + 1}",
                name=f"n{i + 1}",
                cluster_name=cluster_name,
                client_port=ports[i],
                monitor_port=ports[size + i],
                cluster_port=cluster_ports[i],
                peers=cluster_ports,
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Comma-separated, as NATS_URL takes it."""
        return ",".join(n.url for n in self.nodes)

    def node(self, server_name: str) -> ClusterNode:
        (found,) = [n for n in self.nodes if n.server_name == server_name]
        return found

    async def start(self) -> None:
        await asyncio.gather(*(n.start() for n in self.nodes))

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
