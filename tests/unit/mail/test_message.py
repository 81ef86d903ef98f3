"""Building a mail: header safety by construction, the two parts, Message-ID and Date."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from libs.errors import InvalidInput
from libs.mail import (
    Mail,
    MailPermanent,
    MailTemporary,
    MemoryMailer,
    build_message,
    header_text,
    render,
)
from libs.mail.headers import SUBJECT_LIMIT
from libs.mail.message import _check_headers
from libs.settings import Sender

SENDER = Sender(address="gateway@example.com", name="Gateway")
INJECTIONS = [
    "\r\nBcc: x@y.com",
    "\nBcc: x@y.com",
    "\rBcc: x@y.com",
    "\x00Bcc: x@y.com",
    "\u2028Bcc: x@y.com",
    "\u2029Bcc: x@y.com",
    "\x85Bcc: x@y.com",  # NEL
    "\x0bBcc: x@y.com\x0c",
    "\u202eBcc: x@y.com",  # bidi override (Cf)
    "\r\n\r\nBcc: x@y.com\r\n\r\nbody",
    "=?utf-8?q?=0D=0ABcc:_x@y.com?=",  # an encoded word stays text, never decoded into a header
]


def mail(**overrides: object) -> Mail:
    fields: dict[str, object] = {
        "to": ("ops@example.com",),
        "subject": "Job failed",
        "text": "a job failed",
        "html": "<p>a job failed</p>",
    }
    fields.update(overrides)
    return Mail(**fields)  # type: ignore[arg-type]


def wire(message: EmailMessage) -> bytes:
    return message.as_bytes()


def headers_of(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    # Unfold, then one line per header field.
    return [
        line.decode()
        for line in head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n")
    ]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_no_value_adds_a_header(evil: str) -> None:
    m = mail(subject=f"Campaign X{evil} failed")
    sender = Sender(address="gateway@example.com", name=f"Gateway{evil}")
    raw = wire(build_message(m, sender))
    names = [h.split(":", 1)[0].lower() for h in headers_of(raw)]
    assert "bcc" not in names
    assert sorted(names) == sorted(
        ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]
    )
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["Bcc"] is None
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ops@example.com"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_subject_holds_no_control_character(evil: str) -> None:
    subject = mail(subject=evil).subject
    assert all(c.isprintable() for c in subject), subject
    assert subject == header_text(subject)  # already clean: cleaning again changes nothing


def test_header_text_replaces_every_control_and_format_character() -> None:
    every = "".join(
        chr(c)
        for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x200B, 0xFEFF, 0xD800]
    )
    assert header_text(f"a{every}b") == "a b"


def test_long_and_non_ascii_subjects_survive_encoding_and_are_capped() -> None:
    subject = "Kündigung – 顧客が解約を希望 " * 40 + "\r\nBcc: x@y.com"
    m = mail(subject=subject)
    assert len(m.subject) <= SUBJECT_LIMIT and m.subject.endswith("…")
    raw = wire(build_message(m, SENDER))
    assert raw.isascii()  # RFC 2047 encoded words, folded
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=default_policy)
    assert str(parsed["Subject"]) == m.subject
    assert parsed["Bcc"] is None


def test_encoded_words_cannot_smuggle_a_line_break() -> None:
    # Python's email package decodes =?..?= in a header value it is given; before the 2024
    # CPython fixes it then wrote the decoded CR LF out as is.
    subject = mail(
        subject="X =?utf-8?q?=0D=0ABcc:_x@y.com?= =?utf-8?b?DQpCY2M6IHhAeS5jb20=?="
    ).subject
    message = build_message(mail(subject=subject), SENDER)
    assert str(message["Subject"]) == subject
    assert "=?" not in subject
    assert message["Bcc"] is None


def test_a_header_that_would_break_a_line_is_refused() -> None:
    # The check after building: if anything still decoded into a line break, no message.
    message = build_message(mail(), SENDER)
    del message["Subject"]
    message["Subject"] = "=?utf-8?q?a=0D=0ABcc:_x@y.com?="  # bypassing Mail on purpose
    with pytest.raises(ValueError, match="Subject"):
        _check_headers(message)


def test_message_has_text_and_html_parts_message_id_and_date() -> None:
    now = dt.datetime(2026, 12, 6, 16, 0, tzinfo=dt.UTC)
    message = build_message(mail(), SENDER, now=now)
    parsed = message_from_bytes(wire(message), policy=default_policy)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert str(parsed["Message-ID"]).endswith("@example.com>")
    assert parsed["Date"].datetime == now
    assert str(parsed["From"]) == "Gateway <gateway@example.com>"


def test_message_ids_are_unique() -> None:
    ids = {str(build_message(mail(), SENDER)["Message-ID"]) for _ in range(50)}
    assert len(ids) == 50


def test_recipients_are_validated_normalised_and_deduplicated() -> None:
    m = mail(to=("Ops@EXAMPLE.com", "Ops@example.com", "x@bücher.de"))
    assert m.to == ("Ops@example.com", "x@xn--bcher-kva.de")
    with pytest.raises(InvalidInput):
        mail(to=("ops@example.com\r\nBcc: x@y.com",))
    with pytest.raises(InvalidInput):
        mail(to=())


def test_bodies_keep_lines_but_lose_other_controls() -> None:
    m = mail(text="line 1\r\nline 2\rline 3\u2028line 4\x00\x1b[31m", html="<p>\x00</p>")
    assert m.text == "line 1\nline 2\nline 3\nline 4  [31m"
    assert m.html == "<p> </p>"


def test_render_escapes_every_value() -> None:
    bodies = render(
        '<script>alert("campaign")</script>',
        ["Customer said <b>cancel</b> & left"],
        [("Campaign", '"><img src=x onerror=alert(1)>'), ("<th>", "v")],
        link=("Open <call>", 'https://console.example.com/calls/1?a=1&b="2"'),
    )
    assert "<script>" not in bodies.html and "&lt;script&gt;" in bodies.html
    assert "<img" not in bodies.html and "<b>" not in bodies.html
    assert 'href="https://console.example.com/calls/1?a=1&amp;b=&quot;2&quot;"' in bodies.html
    assert "Open &lt;call&gt;" in bodies.html
    assert "Campaign" in bodies.text and "<script>" in bodies.text  # text is text


def test_render_never_links_other_schemes() -> None:
    bodies = render("x", link=("click", "javascript:alert(1)"))
    assert "href" not in bodies.html


async def test_memory_mailer_builds_the_real_message() -> None:
    mailer = MemoryMailer()
    message_id = await mailer.send(mail(subject="a\r\nBcc: x@y.com"))
    ((_, message),) = mailer.sent
    assert message["Message-ID"] == message_id
    assert message["Bcc"] is None


def test_a_failure_reason_is_one_clean_line() -> None:
    # A hostile server's reply may hold NUL (which Postgres text refuses) and line breaks.
    reason = MailPermanent("550 no\x00 such\r\nuser " + "x" * 5000).reason
    assert reason.startswith("550 no such user x") and len(reason) <= 1000
    assert all(c.isprintable() for c in reason)
    assert MailTemporary("451 later").reason == "451 later"
