"""Hostile-input tier: property-based fuzzing of the HTTP API from its own OpenAPI document.

`transcribe up` runs the whole gateway on the embedded stack (a real process, real Postgres,
NATS and SeaweedFS); schemathesis (`st run`) reads `/openapi.json` and sends every operation
generated requests, valid and invalid (the coverage phase's boundary values, then random
fuzzing), with and without a valid key. Every answer must be a non-5xx, and answers must keep
the documented status codes, content types and body schemas.

Bounded for CI: a fixed seed (reproducible: a failure names its seed and a curl line), at most
FUZZ_MAX_EXAMPLES cases per operation and FUZZ_MAX_TIME seconds in all. Explore further by hand
with another seed and more time, e.g. `FUZZ_SEED=7 FUZZ_MAX_TIME=900 pytest -k fuzz`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.up import running_up

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SEED = os.environ.get("FUZZ_SEED", "20261201")
MAX_TIME = os.environ.get("FUZZ_MAX_TIME", "90")
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "40")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def _schemathesis(base: str, *headers: str, report: Path) -> tuple[int, str]:
    argv = [
        str(BIN / "st"), "run", f"{base}/openapi.json",
        "--checks", CHECKS,
        "--phases", "coverage,fuzzing",
        "--seed", SEED,
        "--max-examples", MAX_EXAMPLES,
        "--max-time", MAX_TIME,
        "--workers", "1",  # 2 threads trip a CPython 3.11 ast race inside hypothesis
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
        "--report", "junit",
        "--report-junit-path", str(report),
    ]  # fmt: skip
    for header in headers:
        argv += ["--header", header]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=report.parent
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=int(MAX_TIME) + 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.timeout(1200)
async def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    stack_home: Path, tmp_path: Path
) -> None:
    # Fuzzed URLs and callbacks never leave the machine: public hosts fail DNS here, and private
    # ones are refused by the SSRF guard before any connection.
    async with running_up([BIN / "transcribe", "up"], home=stack_home, cwd=ROOT, env={}) as up:
        # With the operator's key (every operation reachable), then with none at all.
        code, out = await _schemathesis(
            up.base_url, f"X-API-Key: {up.api_key}", report=tmp_path / "key.xml"
        )
        print(out[-6000:])
        assert code == 0, out[-12000:]
        code, out = await _schemathesis(up.base_url, report=tmp_path / "anonymous.xml")
        print(out[-3000:])
        assert code == 0, out[-12000:]

        # The gateway itself logged no unhandled error while being fuzzed.
        assert "Error handling request" not in up.log()
