"""The embedded servers serve real traffic, keep their data across restarts, and clean up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from embedded.nats import NatsServer
from embedded.postgres import PostgresServer
from embedded.seaweed import SeaweedS3Server
from embedded.supervisor import Deadline, process_matches

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def _s3_client(server: SeaweedS3Server, **overrides: Any) -> AsyncIterator[Any]:
    kwargs = {**server.client_kwargs(), **overrides}
    async with get_session().create_client("s3", **kwargs) as client:
        yield client


async def _read_object(server: SeaweedS3Server, bucket: str, key: str) -> bytes:
    async with _s3_client(server) as s3:
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
    return data


async def _wait_gone(pid: int, binary: Path, cwd: Path, seconds: float = 15.0) -> None:
    deadline = Deadline(seconds)
    while process_matches(pid, binary, cwd):
        if deadline.expired:
            raise AssertionError(f"pid {pid} ({binary.name}) still running after {seconds}s")
        await asyncio.sleep(0.05)


# -- the session servers serve ------------------------------------------------------------------


async def test_nats_jetstream_add_stream_publish_get(nats_server: NatsServer) -> None:
    stream = _unique("SERVERS_")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.hello", b"payload")
        message = await js.get_msg(stream, ack.seq)
        assert message.data == b"payload"
        await js.delete_stream(stream)
    finally:
        await nc.close()


async def test_postgres_select_and_create_table(postgres_server: PostgresServer) -> None:
    table = _unique("servers_")
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "transcribe"
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text NOT NULL)")
        await conn.execute(f"INSERT INTO {table} VALUES (1, 'hello')")
        assert await conn.fetchval(f"SELECT note FROM {table} WHERE id = 1") == "hello"
        await conn.execute(f"DROP TABLE {table}")
    finally:
        await conn.close()


async def test_postgres_unix_socket(postgres_server: PostgresServer) -> None:
    assert postgres_server.socket_dir is not None
    conn = await asyncpg.connect(
        host=str(postgres_server.socket_dir),
        port=postgres_server.port,
        user=postgres_server.user,
        database=postgres_server.database,
    )
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_s3_create_bucket_put_get(s3_server: SeaweedS3Server) -> None:
    bucket = _unique("servers-")
    async with _s3_client(s3_server) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
        listed = await s3.list_objects_v2(Bucket=bucket)
        assert [o["Key"] for o in listed["Contents"]] == ["a/b.txt"]
    assert await _read_object(s3_server, bucket, "a/b.txt") == b"hello"


async def test_s3_rejects_a_wrong_secret(s3_server: SeaweedS3Server) -> None:
    async with _s3_client(s3_server, aws_secret_access_key="not-the-secret") as s3:
        with pytest.raises(ClientError) as rejected:
            await s3.list_buckets()
    assert rejected.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


# -- restarts keep data and ports ---------------------------------------------------------------


async def test_nats_restart_keeps_stream_and_port(tmp_path: Path) -> None:
    async def stored_message(url: str, seq: int) -> bytes | None:
        nc = await nats.connect(url)
        try:
            message = await nc.jetstream().get_msg("KEPT", seq)
        finally:
            await nc.close()
        return message.data

    async with NatsServer(tmp_path / "nats") as server:
        url = server.url
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEPT", subjects=["kept.>"])
            seq = (await js.publish("kept.one", b"survives")).seq
        finally:
            await nc.close()

        await server.stop()
        assert not server.running
        await server.start()
        assert server.url == url
        assert await stored_message(url, seq) == b"survives"

    # A new instance on the same data dir (the next `transcribe up`) reuses data and port too.
    async with NatsServer(tmp_path / "nats") as again:
        assert again.url == url
        assert await stored_message(url, seq) == b"survives"


async def test_postgres_restart_keeps_table_and_port(tmp_path: Path) -> None:
    async with PostgresServer(tmp_path / "pg") as server:
        dsn = server.dsn
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE kept (note text)")
            await conn.execute("INSERT INTO kept VALUES ('survives')")
        finally:
            await conn.close()

        await server.stop()
        assert not server.running
        await server.start()
        assert server.dsn == dsn
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "survives"
        finally:
            await conn.close()


async def test_postgres_recovers_from_a_crash_with_a_reused_pid(tmp_path: Path) -> None:
    async with PostgresServer(tmp_path / "pg") as server:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("CREATE TABLE kept AS SELECT 'committed' AS note")
        finally:
            await conn.close()
        assert server.pid is not None
        os.killpg(server.pid, signal.SIGKILL)
        deadline = Deadline(10)
        while server.running:
            assert not deadline.expired, "postgres survived SIGKILL"
            await asyncio.sleep(0.01)
        # The dead postmaster's pid now "belongs" to a live, unrelated process (this one), as
        # happens after a crash on a busy machine; Postgres alone would refuse to start.
        lock = server.pgdata / "postmaster.pid"
        lines = lock.read_text().splitlines()
        lock.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

        await server.start()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "committed"
        finally:
            await conn.close()


async def test_s3_restart_keeps_object_and_endpoint(tmp_path: Path) -> None:
    async with SeaweedS3Server(tmp_path / "s3") as server:
        endpoint = server.endpoint
        async with _s3_client(server) as s3:
            await s3.create_bucket(Bucket="kept-bucket")
            await s3.put_object(Bucket="kept-bucket", Key="kept.txt", Body=b"survives")

        await server.stop()
        assert not server.running
        await server.start()
        assert server.endpoint == endpoint
        assert await _read_object(server, "kept-bucket", "kept.txt") == b"survives"


# -- no process is left behind ------------------------------------------------------------------

_OWNER_SCRIPT = """
import asyncio, sys
from pathlib import Path
import embedded.supervisor as supervisor
from embedded.nats import NatsServer

if sys.argv[2] == "no-parent-death-signal":
    supervisor._parent_death_hook = lambda sig: None

async def main() -> None:
    server = NatsServer(Path(sys.argv[1]))
    await server.start()
    print("PID", server.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _nats_owned_by_killed_process(data_dir: Path, mode: str) -> int:
    """Start nats-server from a child Python process, SIGKILL that process, return nats' pid."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OWNER_SCRIPT,
        str(data_dir),
        mode,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert owner.stdout is not None
    try:
        async with asyncio.timeout(60):
            while not (line := await owner.stdout.readline()).startswith(b"PID "):
                assert line, "owner process exited before reporting the server pid"
    finally:
        owner.kill()
        await owner.wait()
    return int(line.split()[1])


async def test_server_dies_with_its_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    pid = await _nats_owned_by_killed_process(data_dir, "default")
    await _wait_gone(pid, NatsServer(data_dir).binary, data_dir)


async def test_orphaned_server_is_stopped_by_the_next_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    orphan = await _nats_owned_by_killed_process(data_dir, "no-parent-death-signal")
    binary = NatsServer(data_dir).binary
    assert process_matches(orphan, binary, data_dir)
    try:
        async with NatsServer(data_dir) as server:
            assert not process_matches(orphan, binary, data_dir)
            assert server.pid != orphan
    finally:
        if process_matches(orphan, binary, data_dir):
            os.kill(orphan, signal.SIGKILL)
