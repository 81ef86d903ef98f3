"""A newcomer's terminal session against `scripts/up`: `transcribe submit FILE --wait --out DIR`
follows the job with a progress bar and writes every format; `transcribe jobs list/show/delete`
list, show and delete it (the deleted job's transcript is gone)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.acceptance.up import running_up
from tests.stack_fixtures import FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(600)
async def test_submit_wait_download_list_and_delete_from_the_terminal(
    stack_home: Path, tmp_path: Path
) -> None:
    async with running_up([ROOT / "scripts" / "up"], home=stack_home, cwd=ROOT, env={}) as up:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "TRANSCRIBE_API_URL": up.base_url,
            "TRANSCRIBE_API_KEY": up.api_key,
        }
        out_dir = tmp_path / "transcripts"
        code, out, err = await _run(
            env,
            "submit",
            str(FIXTURES / "hello_campaign.wav"),
            "--wait",
            "--out",
            str(out_dir),
            "--format",
            "txt,json,srt,vtt",
            "--poll",
            "0.5",
        )
        assert code == 0, err
        result = json.loads(out)
        job = result["audio_file_id"]
        assert result["status"] == "completed"
        assert "uploading" in err and "100.0%" in err  # the bar followed the upload
        files = {Path(f).suffix: Path(f) for f in result["files"]}
        assert sorted(files) == [".json", ".srt", ".txt", ".vtt"]
        assert files[".txt"].read_text().strip()  # words: whatever the offline engine heard
        assert json.loads(files[".json"].read_text())["segments"]
        assert "-->" in files[".srt"].read_text()
        assert files[".vtt"].read_text().startswith("WEBVTT")

        code, out, err = await _run(env, "jobs", "list", "--all")
        assert code == 0, err
        assert job in [json.loads(line)["audio_file_id"] for line in out.splitlines()]
        code, out, err = await _run(env, "jobs", "delete", job)
        assert code == 0, err
        deleted = json.loads(out)
        assert deleted["status"] == "deleted" and deleted["objects_removed"] is True
        code, out, err = await _run(env, "jobs", "show", job)
        assert code == 0 and json.loads(out)["status"] == "deleted"
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{up.base_url}/api/media/transcript/{job}.txt",
                headers={"X-API-Key": up.api_key},
            ) as resp,
        ):
            assert resp.status == 409
            assert (await resp.json())["error"] == "job_deleted"
