"""`transcribe webhooks ...` against a real database (the operator's view: any key)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import structlog

from libs.settings import Settings
from services.cli import main
from tests.integration.notifier.harness import Job, Key, make_job, make_key

pytestmark = pytest.mark.integration

INSERT_FAILED_DELIVERY = """
INSERT INTO media_pipeline.webhook_deliveries
    (event_id, event_type, audio_file_id, api_key_id, endpoint_url, payload, status, attempts,
     schedule_step, last_status_code, last_error)
VALUES ($1, 'transcription.completed', $2, $3, $4, '{}'::bytea, 'failed', 8, 8, 500, 'HTTP 500')
RETURNING id
"""


@pytest.fixture(autouse=True)
def keep_logging_config() -> Iterator[None]:
    """`main()` configures structlog onto the captured stdout, which closes after the test:
    put the session's configuration back so later tests do not log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@dataclass
class Seeded:
    key: Key
    job: Job
    delivery_id: int
    dsn: str


@pytest.fixture
async def seeded(npool: asyncpg.Pool, notifier_settings: Settings) -> Seeded:
    key = await make_key(npool, webhook_url="https://hooks.example/in")
    job = await make_job(npool, key)
    delivery_id = await npool.fetchval(
        INSERT_FAILED_DELIVERY, uuid.uuid4(), job.id, key.id, "https://hooks.example/in"
    )
    await npool.execute(
        "UPDATE media_pipeline.api_keys SET webhook_disabled_at = now(),"
        " webhook_disabled_reason = '410 Gone' WHERE id = $1",
        key.id,
    )
    return Seeded(key, job, delivery_id, notifier_settings.require_database_url())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main(["--log-format", "console", "webhooks", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


def test_operator_lists_resends_recovers_and_re_enables(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded.dsn)
    hint = seeded.key.raw[:8]
    code, listed = run(capsys, "deliveries", str(seeded.job.id))
    assert code == 0 and isinstance(listed, list)
    assert [(d["id"], d["status"]) for d in listed] == [(seeded.delivery_id, "failed")]

    code, state = run(capsys, "endpoint", "--key", str(seeded.key.id))
    assert code == 0 and isinstance(state, dict) and state["enabled"] is False

    # The endpoint is disabled: resend refuses, recovery skips it.
    assert main(["webhooks", "resend", str(seeded.delivery_id)]) == 1
    capsys.readouterr()
    code, recovered = run(capsys, "recover", "--since", "2000-01-01T00:00Z", "--key", hint)
    assert code == 0 and recovered == {"recovered": 0}

    code, state = run(capsys, "enable", "--key", hint)
    assert code == 0 and isinstance(state, dict) and state["enabled"] is True
    code, recovered = run(capsys, "recover", "--since", "2000-01-01T00:00Z", "--key", hint)
    assert code == 0 and recovered == {"recovered": 1}
    code, shown = run(capsys, "show", str(seeded.delivery_id))
    assert code == 0 and isinstance(shown, dict) and shown["status"] == "pending"

    # No notifier runs here: the test event is queued and reported as not yet attempted.
    code, test = run(capsys, "test", "--key", hint, "--wait", "0")
    assert code == 0 and isinstance(test, dict)
    assert test["event_type"] == "webhook.test" and test["attempt_log"] == []
    assert test["endpoint_url"] == "https://hooks.example/in"


def test_unknown_things_exit_non_zero(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded.dsn)
    assert main(["webhooks", "show", "999999999"]) == 1
    assert main(["webhooks", "deliveries", "not-a-uuid"]) == 2
    assert main(["webhooks", "enable", "--key", "nope"]) == 1
    assert main(["webhooks", "test", "--key", "nope", "--url", "http://127.0.0.1:1/x"]) == 2
    with pytest.raises(SystemExit):
        main(["webhooks", "recover", "--since", "yesterday"])


def test_operator_rotates_and_repoints_an_endpoint(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded.dsn)
    key = str(seeded.key.id)
    code, state = run(capsys, "rotate-secret", "--key", key)
    assert code == 0 and isinstance(state, dict)
    assert state["webhook_secret"] != seeded.key.secret
    assert state["secret_rotation_in_progress"] is True
    code, state = run(capsys, "finish-rotation", "--key", key)
    assert code == 0 and isinstance(state, dict) and state["secret_rotation_in_progress"] is False
    # A new URL is a new endpoint: enabled, whatever disabled the old one.
    code, state = run(capsys, "set-url", "--key", key, "--url", "https://hooks.example/v2")
    assert code == 0 and isinstance(state, dict)
    assert state["webhook_url"] == "https://hooks.example/v2" and state["enabled"] is True
    assert main(["webhooks", "set-url", "--key", key, "--url", "http://10.1.2.3/"]) == 2
