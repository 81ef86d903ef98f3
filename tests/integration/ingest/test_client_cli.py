"""`transcribe submit` and `transcribe jobs list|show|delete` as a user runs them (subprocesses)
against the real ingest app: upload with progress, --wait until the job completes, transcripts
written to --out, listing, deleting, and their errors."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest

from libs.blobstore import S3BlobStore
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.transcript import Segment, Transcript
from libs.transcript.render import FORMATS
from tests.integration.ingest.conftest import Api, make_key
from tests.stack_fixtures import FIXTURES, eventually

pytestmark = pytest.mark.integration

TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")
WAV = FIXTURES / "hello_campaign.wav"


async def _cli(api: Api, key: str | None, *args: str) -> tuple[int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TRANSCRIBE_API_URL": api.base_url}
    if key is not None:
        env["TRANSCRIBE_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _complete(api: Api, file_id: str, text: str) -> None:
    """What the transcriber does, through its lifecycle functions and the real bucket."""
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    transcript = Transcript(
        text=text,
        language="en",
        duration=2.0,
        segments=(Segment(id=0, start=0.0, end=2.0, text=text),),
        model="whisper-1",
        engine="openai",
    )
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    async with S3BlobStore.open(api.settings.require_s3()) as store:
        for fmt, (render, content_type, _ext) in FORMATS.items():
            await store.put_bytes(getattr(keys, fmt), render(transcript), content_type)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)


async def test_submit_wait_download_list_and_delete(api: Api, tmp_path: Path) -> None:
    raw, key = await make_key(api.pool)
    out_dir = tmp_path / "out"
    waiting = asyncio.create_task(
        _cli(
            api,
            raw,
            "submit",
            str(WAV),
            "--out",
            str(out_dir),
            "--format",
            "txt,srt",
            "--poll",
            "0.2",
        )
    )

    async def submitted() -> str | None:
        found = await api.pool.fetchval(
            "SELECT id FROM media_pipeline.audio_files WHERE api_key_id = $1",
            uuid.UUID(key.id),
        )
        return None if found is None else str(found)

    file_id = await eventually(submitted, timeout=60)
    await _complete(api, file_id, "hello from the campaign")
    code, out, err = await waiting
    assert code == 0, err
    result = json.loads(out)
    assert result["audio_file_id"] == file_id and result["status"] == "completed"
    assert sorted(result["files"]) == [
        str(out_dir / f"{file_id}.srt"),
        str(out_dir / f"{file_id}.txt"),
    ]
    assert (out_dir / f"{file_id}.txt").read_text().strip() == "hello from the campaign"
    assert "-->" in (out_dir / f"{file_id}.srt").read_text()
    # The progress bar (stderr is a pipe here: one line per stage) followed the upload.
    assert "uploading" in err and "100.0%" in err and "queued" in err

    # A URL-less second job without --wait answers at once.
    code, out, err = await _cli(api, raw, "submit", str(WAV), "--quiet")
    assert code == 0, err
    second = json.loads(out)["audio_file_id"]
    assert err == ""

    code, out, err = await _cli(api, raw, "jobs", "list", "--all", "--limit", "1")
    assert code == 0, err
    listed = [json.loads(line) for line in out.splitlines()]
    assert [j["audio_file_id"] for j in listed] == [second, file_id]
    code, out, _ = await _cli(api, raw, "jobs", "list", "--status", "completed")
    assert [json.loads(line)["audio_file_id"] for line in out.splitlines()] == [file_id]

    code, out, err = await _cli(api, raw, "jobs", "show", file_id)
    assert code == 0 and json.loads(out)["transcript"] == "hello from the campaign"
    code, out, err = await _cli(api, raw, "jobs", "delete", file_id)
    assert code == 0, err
    assert json.loads(out)["status"] == "deleted"
    code, out, _ = await _cli(api, raw, "jobs", "show", file_id)
    assert json.loads(out)["status"] == "deleted"
    assert await api.objects(key.tenant_prefix + "/" + "unassigned/transcriptions") == []


async def test_client_errors(api: Api, tmp_path: Path) -> None:
    raw, _ = await make_key(api.pool)
    code, _, err = await _cli(api, "tgw_not_a_key", "jobs", "list")
    assert code == 1 and "invalid_api_key" in err
    code, _, err = await _cli(api, None, "jobs", "list")
    assert code == 1 and "TRANSCRIBE_API_KEY" in err
    code, _, err = await _cli(api, raw, "submit", str(WAV), "--format", "pdf", "--wait")
    assert code == 2 and "--format" in err
    code, _, err = await _cli(api, raw, "submit", str(tmp_path / "missing.wav"))
    assert code == 2 and "no such file" in err
    code, _, err = await _cli(api, raw, "submit")
    assert code == 2
    code, _, err = await _cli(api, raw, "jobs", "delete", str(uuid.uuid4()))
    assert code == 1 and "not_found" in err
    code, _, err = await _cli(
        api, raw, "jobs", "list", "--api-url", "http://127.0.0.1:9", "--limit", "1"
    )
    assert code == 1 and "unreachable" in err
    code, _, err = await _cli(api, raw, "submit", "https://example.invalid/a.wav", "--quiet")
    assert code == 1 and "error:" in err
