"""`transcribe up` (or `scripts/up`) as a real subprocess for the acceptance tests: started on a
free port under a temporary TRANSCRIBE_HOME, waited for until its banner, and on the way out
stopped with SIGTERM, which must end it cleanly and leave no server process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.stack_fixtures import eventually, free_port

BANNER = "Transcription gateway is up"


def descendants(pid: int) -> set[int]:
    children: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, set()).add(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), set()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def using(home: Path) -> set[int]:
    """Processes whose command line names the temporary home: the stack's servers."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(home).encode() in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True, slots=True)
class Up:
    base_url: str
    home: Path
    api_key: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@asynccontextmanager
async def running_up(
    argv: list[str | Path], *, home: Path, cwd: Path, env: Mapping[str, str]
) -> AsyncIterator[Up]:
    """Start `argv` (scripts/up or a `transcribe` binary + "up") with TRANSCRIBE_HOME=`home` and
    INGEST_PORT on a free port, plus `env`; yield once the banner is printed."""
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        **env,
        "TRANSCRIBE_HOME": str(home),
        "INGEST_PORT": str(port),
    }
    log_path = home / "up.log"
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        *(str(a) for a in argv), cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    stack: set[int] = set()
    try:

        async def ready() -> bool:
            assert proc.returncode is None, log_path.read_text()[-4000:]
            return BANNER in log_path.read_text()

        await eventually(ready, timeout=300, interval=0.25)
        stack = descendants(proc.pid)
        assert stack, "transcribe up started no server processes"
        key = json.loads((home / "credentials.json").read_text())["api_key"]
        yield Up(f"http://127.0.0.1:{port}", home, key, log_path)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 90)
        finally:
            log.close()
    assert code == 0, log_path.read_text()[-4000:]

    async def all_gone() -> bool:
        return not alive(stack) and not using(home)

    await eventually(all_gone, timeout=30, interval=0.2)
