"""`transcribe up` from the wheel, installed in a fresh venv, run outside the checkout.

The wheel is built from this checkout (`pip wheel --no-deps`), installed with its `embedded` extra
(at the versions uv.lock pins) into a new venv (no system site-packages, nothing of the checkout on sys.path), and
`transcribe up` runs there with the current directory and TRANSCRIBE_HOME in a temporary
directory. The banner's upload example must name the sample recording inside the installed
package; uploading that file and submitting the demo recording by id are both QUEUED, the upload
is transcribed, a mail sent to the SMTP sink the banner names is logged (so the sink's aiosmtpd
is in the embedded extra), the web console's pages and assets are served from the installed
package, and SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from libs.mail import Mail, smtp_mailer
from libs.settings import Settings
from tests.acceptance.up import running_up
from tests.stack_fixtures import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _install_wheel(tmp: Path) -> Path:
    """Build the wheel of this checkout and install it with [embedded] into a fresh venv; returns
    the venv. The outer pip installs into it (`--python`), so the venv needs no pip of its own;
    no byte-compiling saves half the install time."""
    dist = tmp / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT, cwd=tmp)
    (wheel,) = dist.glob("transcription_gateway-*.whl")
    # The locked versions (uv.lock), as a user installing from the lock would get them.
    constraints = tmp / "constraints.txt"
    _run(
        Path(sys.executable).parent / "uv", "export", "--frozen", "--no-hashes", "--no-header",
        "--extra", "embedded", "--no-emit-project", "--project", ROOT, "-o", constraints,
        cwd=tmp,
    )  # fmt: skip
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    _run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python",
        "install", "-q", "--no-compile", "-c", constraints, f"{wheel}[embedded]",
        cwd=tmp,
    )  # fmt: skip
    return venv


@pytest.mark.timeout(600)
async def test_transcribe_up_from_an_installed_wheel(tmp_path: Path, stack_home: Path) -> None:
    began = time.monotonic()
    venv = await asyncio.to_thread(_install_wheel, tmp_path)
    installed = time.monotonic()
    # The code that runs is the installed copy, not this checkout.
    where = _run(
        venv / "bin" / "python", "-c",
        "import embedded, libs, services; print(embedded.__file__, libs.__file__, services.__file__)",
        cwd=tmp_path,
    )  # fmt: skip
    for path in where.split():
        assert Path(path).is_relative_to(venv), where

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    async with running_up(
        [venv / "bin" / "transcribe", "up"], home=stack_home, cwd=run_dir, env=env
    ) as up:
        ready_at = time.monotonic()
        banner = up.log()
        key = up.api_key
        assert key in banner
        match = re.search(r"-F file=@(\S+)", banner)
        assert match, banner[-3000:]
        sample = Path(match.group(1))
        assert sample.is_relative_to(venv), sample
        assert sample.is_file() and sample.name == "hello_campaign.wav"

        # Without SMTP_URL, mail goes to a sink on loopback that logs each message.
        sink = re.search(r"E-mail notifications go to (smtp://127\.0\.0\.1:\d+)", banner)
        assert sink, banner[-3000:]
        mailer = smtp_mailer(
            Settings.from_env({"SMTP_URL": sink.group(1), "SMTP_FROM": "test@example.com"})
        )
        mail = Mail(to=("newcomer@example.com",), subject="Hello", text="hi", html="<p>hi</p>")
        message_id = await mailer.send(mail)

        async def mail_logged() -> bool:
            return any(
                "demo_mail_received" in line and message_id in line
                for line in up.log().splitlines()
            )

        await eventually(mail_logged, timeout=30)

        headers = {"X-API-Key": key}
        async with aiohttp.ClientSession(base_url=up.base_url, headers=headers) as http:
            form = aiohttp.FormData()
            form.add_field("file", sample.read_bytes(), filename=sample.name)
            async with http.post("/api/media/transcribe", data=form) as resp:
                assert resp.status == 200, await resp.text()
                uploaded = await resp.json()
            assert uploaded["status"] == "QUEUED", uploaded
            by_id_form = {"recording_id": "1001", "b2_prefix": "gateway"}
            async with http.post("/api/media/transcribe", data=by_id_form) as resp:
                assert resp.status == 200, await resp.text()
                by_id = await resp.json()
            assert by_id["status"] == "QUEUED", by_id
            assert by_id["b2_key"].startswith("gateway/spring_renewals/audio/442079460018/")

            async def transcribed() -> dict[str, object] | None:
                path = f"/api/media/status/{uploaded['audio_file_id']}"
                async with http.get(path) as resp:
                    status: dict[str, object] = await resp.json()
                assert status["status"] in ("pending", "completed"), status
                return status if status["status"] == "completed" else None

            status = await eventually(transcribed, timeout=180, interval=0.5)
            assert re.search(r"\bcampaign\b", str(status["transcript"])), status

            # The web console's built assets ship in the wheel: no Node on this machine.
            async with http.get("/console/calls/x") as resp:
                assert resp.status == 200
                page = await resp.text()
            for asset in re.findall(r'"(/console/assets/[^"]+)"', page):
                async with http.get(asset) as resp:
                    assert resp.status == 200, asset
    print(
        f"wheel built and installed in {installed - began:.1f}s, "
        f"`transcribe up` ready {ready_at - installed:.1f}s later, "
        f"whole test {time.monotonic() - began:.1f}s"
    )
