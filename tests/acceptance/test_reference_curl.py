"""The README's first command and the reference client's curl lines, verbatim.

`scripts/up` runs as a real subprocess (embedded Postgres, nats-server and SeaweedFS under a
temporary TRANSCRIBE_HOME, the API on a free port); the three curl lines of the reference
document's Operations section run as real `curl` processes, with only their placeholders and
host filled in; SIGTERM then stops everything, and no process of the stack is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack_fixtures import eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "spec" / "000_5dfd248df889793e.txt"
REFERENCE_HOST = "https://transcribe.vertikon.ltd"

# Copied verbatim from the Operations section of the reference document (checked against it
# below whenever the document is beside the repository).
SUBMIT_RECORDING = """curl -H "X-API-Key: <key>" \\
     -H "Content-Type: application/x-www-form-urlencoded" \\
     --data "recording_id=<RID>&b2_prefix=gateway" \\
     https://transcribe.vertikon.ltd/api/media/transcribe"""
SUBMIT_URL = """curl -H "X-API-Key: <key>" \\
     -H "Content-Type: application/x-www-form-urlencoded" \\
     --data "url=<URL>&b2_prefix=gateway" \\
     https://transcribe.vertikon.ltd/api/media/transcribe"""
POLL = """curl -H "X-API-Key: <key>" \\
     https://transcribe.vertikon.ltd/api/media/status/<audio_file_id>"""


def test_the_curl_lines_are_the_reference_ones() -> None:
    if not SPEC.exists():
        pytest.skip("the reference document is not beside this checkout")
    text = SPEC.read_text()
    for line in (SUBMIT_RECORDING, SUBMIT_URL, POLL):
        assert line in text


def _descendants(pid: int) -> set[int]:
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


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _using(home: Path) -> set[int]:
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


async def _curl(template: str, base: str, **values: str) -> dict[str, object]:
    command = template.replace(REFERENCE_HOST, base)
    for name, value in values.items():
        command = command.replace(f"<{name}>", value)
    assert "<" not in command, command
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command + " --silent --show-error --max-time 60",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body: dict[str, object] = json.loads(out)
    return body


@pytest.fixture
def stack_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    # Whatever the test did, never leave servers running.
    for pid in _using(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(600)
async def test_scripts_up_and_the_reference_curl_lines(stack_home: Path, samples_url: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")  # Debian images used here ship it
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    samples_host = samples_url.split("://", 1)[1]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TRANSCRIBE_HOME": str(stack_home),
        "INGEST_PORT": str(port),
        "SSRF_ALLOWLIST": samples_host,
    }
    log = (stack_home / "up.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "up"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack: set[int] = set()
    try:

        async def ready() -> bool:
            assert proc.returncode is None, (stack_home / "up.log").read_text()[-4000:]
            return "Transcription gateway is up" in (stack_home / "up.log").read_text()

        await eventually(ready, timeout=300, interval=0.25)
        stack = _descendants(proc.pid)
        assert stack, "transcribe up started no server processes"
        banner = (stack_home / "up.log").read_text()
        assert "recording_id=1001&b2_prefix=gateway" in banner
        key = json.loads((stack_home / "credentials.json").read_text())["api_key"]
        assert key in banner

        by_id = await _curl(SUBMIT_RECORDING, base, key=key, RID="1001")
        assert by_id["status"] == "QUEUED", by_id
        assert str(by_id["b2_key"]).startswith("gateway/spring_renewals/audio/442079460018/")
        by_url = await _curl(
            SUBMIT_URL, base, key=key, URL=f"{samples_url}/calls/hello_campaign.opus"
        )
        assert by_url["status"] == "QUEUED", by_url
        assert str(by_url["b2_key"]).startswith("gateway/unassigned/audio/unknown/")

        for job in (by_id, by_url):

            async def done(job: dict[str, object] = job) -> dict[str, object] | None:
                status = await _curl(POLL, base, key=key, audio_file_id=str(job["audio_file_id"]))
                assert status["status"] in ("pending", "completed"), status
                return status if status["status"] == "completed" else None

            status = await eventually(done, timeout=180, interval=0.5)
            assert re.search(r"\bcampaign\b", str(status["transcript"])), status
            metadata = status["metadata"]
            assert isinstance(metadata, dict)
            assert str(metadata["b2_transcript_json_key"]).endswith(".json")
            assert str(metadata["b2_transcript_txt_key"]).endswith(".txt")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 90)
        finally:
            log.close()
    assert code == 0, (stack_home / "up.log").read_text()[-4000:]

    async def all_gone() -> bool:
        return not _alive(stack) and not _using(stack_home)

    await eventually(all_gone, timeout=30, interval=0.2)
