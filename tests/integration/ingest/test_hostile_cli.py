"""Hostile input on the CLI commands of this session (`transcribe categories set`, `notify
add`, `users create`/`disable`, `insights template set`): argv bytes that are not UTF-8
(Python reads them as lone surrogates), control characters and escape sequences, over-long
values, and rule or template files that are not JSON, not UTF-8, empty, nested thousands
deep or hold NUL. Each ends with a one-line message and exit code 1 (refused) or 2 (usage),
never a traceback, and writes nothing."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.ingest.conftest import Api, bootstrap_key_id
from tests.stack_fixtures import API_KEY

pytestmark = pytest.mark.integration

TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")

NOT_UTF8 = b"a\xff\xfeb"
ESCAPE = b"a\x1b[31mred\x07"

# Argument values no command can take.
VALUES: dict[str, bytes] = {
    "not_utf8": NOT_UTF8,
    "escape": ESCAPE,
    "newline": b"a\nb",
    "long": b"x" * 20_000,
    "empty": b"",
}

# Files given as --rule / a template.
FILES: dict[str, bytes] = {
    "empty": b"",
    "not_json": b"{rule",
    "not_utf8": b'{"said": ["\xff"]}',
    "nul": b'{"said": ["a\x00b"]}',
    "nul_escape": b'{"said": ["a\\u0000b"]}',
    "lone_surrogate": b'{"said": ["\\ud800"]}',
    "bom": b'\xef\xbb\xbf{"said": ["a"]}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "bigint": b'{"metric": "duration", "min": 1' + b"0" * 5000 + b"}",
    "nan": b'{"metric": "duration", "min": NaN}',
    "array": b"[]",
}


async def _cli(api: Api, *args: bytes | str, stdin: bytes = b"") -> tuple[int, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TRANSCRIBE_API_URL": api.base_url,
        "TRANSCRIBE_API_KEY": API_KEY,
        "DATABASE_URL": api.settings.require_database_url(),
    }
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        "--log-format",
        "console",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def _refused(code: int, err: str) -> None:
    assert code in (1, 2), (code, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert err.strip(), "no message"


async def _count(api: Api, table: str) -> int:
    return int(await api.pool.fetchval(f"SELECT count(*) FROM media_pipeline.{table}"))


def _commands(value: bytes, key: str = "") -> dict[str, tuple[str, list[bytes | str]]]:
    """command -> (the table it writes, argv) with `value` in one argument."""
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org".encode()
    return {
        "notify_key": (
            "notification_rules",
            ["notify", "add", "--key", value, "--on", "failed", "--email", "a@example.org"],
        ),
        "notify_on": (
            "notification_rules",
            ["notify", "add", "--key", key, "--on", value, "--email", "a@example.org"],
        ),
        "notify_category": (
            "notification_rules",
            [
                "notify",
                "add",
                "--key",
                key,
                "--on",
                b"category:" + value,
                "--email",
                "a@example.org",
            ],
        ),
        "notify_campaign": (
            "notification_rules",
            [
                "notify",
                "add",
                "--key",
                key,
                "--on",
                "failed",
                "--campaign",
                value,
                "--email",
                "a@example.org",
            ],
        ),
        "notify_email": (
            "notification_rules",
            ["notify", "add", "--key", key, "--on", "failed", "--email", value],
        ),
        "notify_slack": (
            "notification_rules",
            ["notify", "add", "--key", key, "--on", "failed", "--slack", value],
        ),
        "notify_list_key": ("notification_rules", ["notify", "list", "--key", value]),
        "users_email": (
            "console_users",
            ["users", "create", "--email", value, "--role", "viewer", "--operator"],
        ),
        "users_key": (
            "console_users",
            ["users", "create", "--email", email, "--role", "viewer", "--key", value],
        ),
        "users_disable": ("console_users", ["users", "disable", value]),
        "users_reset": ("console_users", ["users", "reset-password", value]),
        "categories_name": ("categories", ["categories", "set", value, "--rule", "-"]),
        "categories_key": (
            "categories",
            ["categories", "set", "churn", "--rule", "-", "--key", value],
        ),
        "categories_since": ("categories", ["categories", "apply", "churn", "--since", value]),
        "template_campaign": (
            "insight_templates",
            ["insights", "template", "set", "-", "--campaign", value],
        ),
        "template_key": ("insight_templates", ["insights", "template", "set", "-", "--key", value]),
    }


ARGV_CASES = [
    *sorted((c, v) for c in _commands(b"") for v in VALUES if v != "empty"),
    ("notify_key", "empty"),
    ("notify_on", "empty"),
    ("notify_email", "empty"),
    ("users_email", "empty"),
    ("categories_name", "empty"),
    ("template_campaign", "empty"),
]


@pytest.mark.parametrize(("command", "value"), ARGV_CASES)
async def test_a_hostile_argument_is_a_message_and_an_exit_code(
    api: Api, command: str, value: str
) -> None:
    table, argv = _commands(VALUES[value], str(await bootstrap_key_id(api)))[command]
    before = await _count(api, table)
    code, err = await _cli(api, *argv, stdin=b'{"said": ["refund"]}')
    _refused(code, err)
    assert await _count(api, table) == before


# The CLI reads a rule file as JSON text does (a UTF-8 BOM is allowed); the gateway reads a
# template's bytes as sent, where a BOM is not JSON.
@pytest.mark.parametrize("name", sorted(set(FILES) - {"bom"}))
async def test_a_hostile_rule_file_is_a_message_and_an_exit_code(
    api: Api, tmp_path: Path, name: str
) -> None:
    before = await _count(api, "categories")
    rule = tmp_path / "rule.json"
    rule.write_bytes(FILES[name])
    code, err = await _cli(api, "categories", "set", "hostile-cli", "--rule", str(rule))
    _refused(code, err)
    code, err = await _cli(
        api, "categories", "set", "hostile-cli", "--rule", "-", stdin=FILES[name]
    )
    _refused(code, err)
    assert await _count(api, "categories") == before


@pytest.mark.parametrize("name", sorted(FILES))
async def test_a_hostile_template_file_is_a_message_and_an_exit_code(
    api: Api, tmp_path: Path, name: str
) -> None:
    before = await _count(api, "insight_templates")
    template = tmp_path / "template.json"
    template.write_bytes(FILES[name])
    code, err = await _cli(api, "insights", "template", "set", str(template), "--campaign", "x")
    _refused(code, err)
    assert await _count(api, "insight_templates") == before


async def test_a_missing_or_unreadable_file_is_a_usage_error(api: Api, tmp_path: Path) -> None:
    for argv in (
        ["categories", "set", "hostile-cli", "--rule", str(tmp_path / "nope.json")],
        ["categories", "set", "hostile-cli", "--rule", str(tmp_path)],
        ["insights", "template", "set", str(tmp_path / "nope.json")],
        ["insights", "template", "set", str(tmp_path)],
        ["categories", "set", "hostile-cli", "--rule", NOT_UTF8],
        ["insights", "template", "set", NOT_UTF8],
    ):
        code, err = await _cli(api, *argv)
        assert code == 2, (argv, err[-2000:])
        assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize(
    "password",
    [b"ab\xffcdefghijkl\n", b"ab\x00cdefghijkl\n", b"ab\x1b[2Jcdefghijkl\n", b"short\n", b"\n"],
)
async def test_a_hostile_password_on_stdin_is_refused(api: Api, password: bytes) -> None:
    before = await _count(api, "console_users")
    email = f"pw-{uuid.uuid4().hex[:8]}@example.org"
    argv = ["users", "create", "--email", email, "--role", "viewer", "--operator"]
    code, err = await _cli(api, *argv, "--password-stdin", stdin=password)
    _refused(code, err)
    assert await _count(api, "console_users") == before


async def test_notify_numbers_are_bounded(api: Api) -> None:
    status, rule, _ = await api.request(
        "POST", "/api/notifications", json={"events": ["failed"], "emails": ["n@example.org"]}
    )
    assert status == 201, rule
    for argv in (
        # A delivery id Postgres's bigint cannot hold; a sign; digits of another script.
        ["notify", "resend", "9" * 30],
        ["notify", "resend", "-1"],
        ["notify", "resend", "\u0661"],
        # No notifier runs here: an unbounded wait would never end.
        ["notify", "test", rule["id"], "--wait", "inf"],
        ["notify", "test", rule["id"], "--wait", "nan"],
        ["notify", "test", rule["id"], "--wait", "-1"],
        ["notify", "test", rule["id"], "--wait", "1e9"],
    ):
        code, err = await _cli(api, *argv)
        assert code == 2, (argv, code, err[-2000:])
        assert "Traceback" not in err, err[-3000:]
