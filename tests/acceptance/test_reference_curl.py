"""The README's first command and the reference client's curl lines, verbatim.

`scripts/up` runs as a real subprocess (embedded Postgres, nats-server and SeaweedFS under a
temporary TRANSCRIBE_HOME, the API on a free port); the three curl lines of the reference
document's "Client usage" section run as real `curl` processes, with only their placeholders and
host filled in; SIGTERM then stops everything, and no process of the stack is left behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.up import running_up
from tests.stack_fixtures import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


ROOT = Path(__file__).resolve().parents[2]
REFERENCE_HOST = "https://transcribe.vertikon.ltd"

# Copied verbatim from the "Client usage" section of the reference system's document (the
# gateway this project succeeds; the document is not part of this repository): what existing
# clients run, so these strings must not be edited to suit the gateway.
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


async def _put_category(base: str, key: str, name: str, rule: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{base}/api/categories/{name}", json={"rule": rule}, headers={"X-API-Key": key}
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()


@pytest.mark.timeout(600)
async def test_scripts_up_and_the_reference_curl_lines(stack_home: Path, samples_url: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")  # Debian images used here ship it
    samples_host = samples_url.split("://", 1)[1]
    async with running_up(
        [ROOT / "scripts" / "up"], home=stack_home, cwd=ROOT, env={"SSRF_ALLOWLIST": samples_host}
    ) as up:
        base, key = up.base_url, up.api_key
        banner = up.log()
        assert "recording_id=1001&b2_prefix=gateway" in banner
        assert key in banner
        # The web console's demo operator admin, printed like the key: it logs in.
        login = re.search(r"Web console: (\S+)/console/ +log in as (\S+) / (\S+)", banner)
        assert login is not None and login.group(1) == base, banner
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base}/api/session",
                json={"email": login.group(2), "password": login.group(3)},
                headers={"Origin": base},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["user"]["operator"] is True
        # Call insights (docs/insights.md): a category of the key; no chat model is configured.
        await _put_category(base, key, "mentions_campaign", {"said": ["campaign"]})

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

            # `transcribe up` runs services/insights: categories, and `not_configured`.
            async def evaluated(job: dict[str, object] = job) -> dict[str, Any] | None:
                status = await _curl(POLL, base, key=key, audio_file_id=str(job["audio_file_id"]))
                meta: dict[str, Any] = status["metadata"]  # type: ignore[assignment]
                return None if meta["insights"]["status"] == "pending" else meta

            meta = await eventually(evaluated, timeout=120, interval=0.5)
            assert meta["insights"] == {"status": "not_configured", "reason": "no_model"}
            assert [c["name"] for c in meta["categories"]] == ["mentions_campaign"]
