"""`transcribe categories` as a user runs it (subprocesses) against the real ingest app: set from
a file and from stdin, list, get, apply over past calls, delete; bad rules and usage errors."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest

from libs.categories import store
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.transcript import Transcript
from libs.transcript.model import Utterance
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.stack_fixtures import API_KEY

pytestmark = pytest.mark.integration

TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")
RULE = {"said": ["cancel my subscription"], "by": "customer"}


async def _cli(api: Api, key: str, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TRANSCRIBE_API_URL": api.base_url,
        "TRANSCRIBE_API_KEY": key,
    }
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _completed_call(api: Api, upstream: Upstream, key: str, text: str) -> str:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "campaign": "Spring"}, key=key)
    assert status == 200, body
    file_id = str(body["audio_file_id"])
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    turn = Utterance(speaker="Channel 1", role="customer", channel=1, start=1.0, end=3.0, text=text)
    transcript = Transcript(
        text=text, language="en", duration=5.0, model="m", engine="e", utterances=(turn,)
    )
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)
    return file_id


async def test_set_list_apply_delete(api: Api, upstream: Upstream, tmp_path: Path) -> None:
    raw, key = await make_key(api.pool)
    said = await _completed_call(api, upstream, raw, "I want to cancel my subscription.")
    await _completed_call(api, upstream, raw, "Just checking my balance.")
    rule_file = tmp_path / "rule.json"
    rule_file.write_text(json.dumps(RULE))

    code, out, err = await _cli(api, raw, "categories", "set", "cancel", "--rule", str(rule_file))
    assert code == 0, err
    assert json.loads(out)["rule"] == RULE
    code, out, err = await _cli(
        api, raw, "categories", "set", "notice", "--rule", "-", stdin=b'{"not_said": ["recorded"]}'
    )
    assert code == 0, err
    code, out, err = await _cli(api, raw, "categories", "list")
    assert code == 0, err
    assert [c["name"] for c in json.loads(out)["categories"]] == ["cancel", "notice"]
    code, out, err = await _cli(api, raw, "categories", "get", "notice")
    assert code == 0 and json.loads(out)["rule"] == {"not_said": ["recorded"]}, err

    code, out, err = await _cli(api, raw, "categories", "apply", "cancel", "--since", "1d")
    assert code == 0, err
    done = json.loads(out)
    assert (done["evaluated"], done["matched"], done["skipped"]) == (2, 1, 0), done
    [match] = await store.matches_for(api.pool, uuid.UUID(said))
    assert match.name == "cancel" and match.matches[0].start == 1.0

    # The operator's key names the key.
    code, out, err = await _cli(api, API_KEY, "categories", "list", "--key", key.id)
    assert code == 0 and len(json.loads(out)["categories"]) == 2, err

    code, out, err = await _cli(api, raw, "categories", "delete", "cancel")
    assert code == 0 and json.loads(out) == {"name": "cancel", "deleted": True}, err
    assert await store.matches_for(api.pool, uuid.UUID(said)) == ()
    code, out, err = await _cli(api, raw, "categories", "delete", "cancel")
    assert code == 1 and "not_found" in err


async def test_bad_rules_and_usage(api: Api, tmp_path: Path) -> None:
    raw, _ = await make_key(api.pool)
    code, _, err = await _cli(
        api, raw, "categories", "set", "x", "--rule", "-", stdin=b'{"all": [{"said": 3}]}'
    )
    assert code == 1 and "invalid_rule: all[0].said: must be a non-empty list" in err, err
    code, _, err = await _cli(api, raw, "categories", "set", "x", "--rule", "-", stdin=b"{nope")
    assert code == 2 and "not JSON" in err
    code, _, err = await _cli(api, raw, "categories", "set", "x", "--rule", str(tmp_path / "no"))
    assert code == 2 and "cannot read" in err
    code, _, err = await _cli(api, raw, "categories", "set", "x")
    assert code == 2 and "--rule" in err
    code, _, err = await _cli(api, raw, "categories", "get")
    assert code == 2 and "takes NAME" in err
    code, _, err = await _cli(api, raw, "categories", "apply", "x", "--since", "soon")
    assert code == 2 and "invalid_since" in err
    code, _, err = await _cli(api, raw, "categories", "get", "a/b")
    assert code == 1 and "invalid_category_name" in err
