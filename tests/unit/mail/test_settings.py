"""SMTP_URL, SMTP_FROM, SMTP_TIMEOUT_SECONDS and SMTP_CA_FILE: parsed and checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.mail import smtp_mailer
from libs.settings import Sender, Settings, SettingsError, SmtpServer


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("smtp://mail.example.com", SmtpServer("none", "mail.example.com", 25)),
        ("smtp+starttls://mail.example.com", SmtpServer("starttls", "mail.example.com", 587)),
        ("smtps://mail.example.com", SmtpServer("tls", "mail.example.com", 465)),
        ("SMTPS://Mail.Example.com:2465/", SmtpServer("tls", "mail.example.com", 2465)),
        (
            "smtp+starttls://apikey%40example.com:p%40ss%3Aw%2Fd@mail.example.com:2525",
            SmtpServer("starttls", "mail.example.com", 2525, "apikey@example.com", "p@ss:w/d"),
        ),
        ("smtp://u:p@127.0.0.1:1025", SmtpServer("none", "127.0.0.1", 1025, "u", "p")),
        ("smtps://[::1]", SmtpServer("tls", "::1", 465)),
    ],
)
def test_smtp_url_forms(url: str, server: SmtpServer) -> None:
    assert Settings.from_env({"SMTP_URL": url}).smtp_url == server


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://mail.example.com", "must start with smtp://"),
        ("mail.example.com", "must start with smtp://"),
        ("smtps://", "must name a host"),
        ("smtp://mail.example.com:99999", "not a valid URL"),
        ("smtp://mail.example.com:x", "not a valid URL"),
        ("smtp://mail.example.com/path", "nothing after it"),
        ("smtp://mail.example.com?tls=1", "nothing after it"),
        ("smtps://user@mail.example.com", "no password"),
        ("smtps://:pw@mail.example.com", "no user name"),
        ("smtp://u:p@mail.example.com", "only over TLS"),
        ("smtp://mail.example.com\r\nX: y", "control characters"),
    ],
)
def test_bad_smtp_urls_are_refused_by_name(url: str, why: str) -> None:
    with pytest.raises(SettingsError, match=f"SMTP_URL .*{why}"):
        Settings.from_env({"SMTP_URL": url})


def test_the_password_never_shows() -> None:
    settings = Settings.from_env(
        {"SMTP_URL": "smtps://user:hunter2-%C3%A9@mail.example.com", "SMTP_FROM": "a@example.com"}
    )
    assert settings.smtp_url is not None and settings.smtp_url.password == "hunter2-é"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert "hunter2" not in settings.smtp_url.display
    assert settings.smtp_url.display == "smtps://user@mail.example.com:465"
    mailer = smtp_mailer(settings)
    assert "hunter2" not in repr(mailer.server)


@pytest.mark.parametrize(
    ("raw", "sender"),
    [
        ("gateway@example.com", Sender("gateway@example.com", "")),
        (
            "Transcription gateway <gateway@example.com>",
            Sender("gateway@example.com", "Transcription gateway"),
        ),
        ('"Gateway, Inc." <gateway@Example.COM>', Sender("gateway@example.com", "Gateway, Inc.")),
        ("gateway@mail.internal", Sender("gateway@mail.internal", "")),
        ("gw@bücher.de", Sender("gw@xn--bcher-kva.de", "")),
    ],
)
def test_smtp_from_forms(raw: str, sender: Sender) -> None:
    assert Settings.from_env({"SMTP_FROM": raw}).smtp_from == sender


@pytest.mark.parametrize(
    "raw",
    [
        "gateway",
        "Gateway <>",
        "Gate\r\nBcc: x@y.com <g@example.com>",
        "jörg@example.com",
        "<a@b.com",
    ],
)
def test_bad_smtp_from_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="SMTP_FROM"):
        Settings.from_env({"SMTP_FROM": raw})


def test_timeout_and_ca_file_are_checked(tmp_path: Path) -> None:
    assert Settings.from_env({}).smtp_timeout == 30.0
    with pytest.raises(SettingsError, match="SMTP_TIMEOUT_SECONDS"):
        Settings.from_env({"SMTP_TIMEOUT_SECONDS": "0"})
    with pytest.raises(SettingsError, match="SMTP_CA_FILE must be a readable file"):
        Settings.from_env({"SMTP_CA_FILE": str(tmp_path / "missing.pem")})


def test_mailer_needs_url_and_from() -> None:
    with pytest.raises(SettingsError, match="SMTP_URL is not set"):
        smtp_mailer(Settings.from_env({}))
    with pytest.raises(SettingsError, match="SMTP_FROM"):
        smtp_mailer(Settings.from_env({"SMTP_URL": "smtp://127.0.0.1"}))
