"""What a notification says: one event of a job (`Item`), and the message that carries one item
or a digest of many, as a Slack incoming-webhook payload or the parts of an e-mail. Pure code.

Only what a policy let through ever gets here: evidence comes from the redacted event, and on
top of that every free text is scrubbed (`scrubbed`: nothing the redaction detector finds, of
any class, written or spoken; no run of six or more digits, no masked card group with its last
digits, no control characters) and the phone number is masked
(`masked_phone`). Failing closed: a notification loses a digit rather than leak one.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Sequence
from datetime import datetime

import msgspec

from libs.redaction import EntityClass, RedactionTimeout, detect

# Slack's limits (api.slack.com/reference/block-kit): 50 blocks a message, 3000 characters in
# a section's text, 150 in a header's, 2000 in a context element; the `text` fallback is cut
# by Slack at 40,000 characters, we stay far below.
SLACK_MAX_BLOCKS = 50
SLACK_SECTION_CHARS = 3000
SLACK_HEADER_CHARS = 150
SLACK_CONTEXT_CHARS = 2000
TEXT_FALLBACK_CHARS = 3000
# A digest names at most this many jobs per line, and at most this many lines.
DIGEST_IDS = 5
DIGEST_GROUPS = 20
SUBJECT_CHARS = 200
DETAIL_CHARS = 300
EVIDENCE_CHARS = 500

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# A masked card ("#### #### #### 1234") with whatever digits follow its #s.
_MASKED = re.compile(r"#[#\s\-]*\d[\d\s\-]*")
# Six or more digits, spaces, dots or dashes between them allowed: card numbers, phone numbers,
# account numbers that a detector missed.
_DIGIT_RUN = re.compile(r"\d(?:[\s.\-]*\d){5,}")


# How much of a text the detector reads (a few times what is kept: what follows is cut anyway),
# and for how long: past it the whole text is withheld.
_DETECT_FACTOR = 4
_DETECT_SECONDS = 2.0
_EVERY_CLASS = frozenset(EntityClass)


def _detected(text: str) -> str:
    """What libs.redaction's detector finds of any class (cards, phones, e-mail addresses,
    ... written or spoken: "four one one one ...") replaced by [redacted], whatever the job's
    policy: a notification tells people about a call, not its data. All withheld when the
    detector cannot finish in time (fail closed)."""
    try:
        found = detect(text, _EVERY_CLASS, deadline=time.monotonic() + _DETECT_SECONDS)
    except RedactionTimeout:
        return "[redacted]"
    out: list[str] = []
    at = 0
    for f in found:
        out.append(text[at : f.start])
        out.append("[redacted]")
        at = f.end
    out.append(text[at:])
    return "".join(out)


def scrubbed(text: str | None, limit: int = DETAIL_CHARS) -> str:
    """One line of free text safe to send: control characters become spaces, what the redaction
    detector finds (any class, written or spoken), masked cards and long digit runs become
    [redacted], cut at `limit` characters."""
    if not text:
        return ""
    out = _CONTROL.sub(" ", text[: limit * _DETECT_FACTOR])
    out = _detected(out)
    out = _MASKED.sub("[redacted]", out)
    out = _DIGIT_RUN.sub("[redacted]", out)
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 1] + "…"


def one_line(text: str | None, limit: int = DETAIL_CHARS) -> str | None:
    """A name (campaign, category, outcome) on one line: control characters become spaces."""
    if text is None:
        return None
    out = " ".join(_CONTROL.sub(" ", text).split())
    return out if len(out) <= limit else out[: limit - 1] + "…"


def masked_phone(phone: str | None) -> str | None:
    """Only the last three digits of a phone number: +44••••••••001."""
    if not phone:
        return None
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 3:
        return "•" * len(digits)
    lead = "+" if phone.strip().startswith("+") else ""
    return lead + "•" * (len(digits) - 3) + "".join(digits[-3:])


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    category: str
    text: str  # scrubbed, redacted
    start: float | None = None


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a job as the rules that matched it will tell it. Built from the (redacted)
    event and the job's row; stored in notification_items.item."""

    events: tuple[str, ...]  # the rule events it matches: failed, category:cancel, ...
    audio_file_id: str
    at: datetime
    campaign: str | None = None
    recording_id: str | None = None
    phone: str | None = None  # masked
    duration: float | None = None
    error_code: str | None = None
    error_detail: str | None = None
    evidence: tuple[Evidence, ...] = ()
    outcome: str | None = None

    def for_rule(self, rule_events: Sequence[str]) -> tuple[str, ...]:
        wanted = set(rule_events)
        return tuple(e for e in self.events if e in wanted)


item_decoder = msgspec.json.Decoder(Item)


class MailParts(msgspec.Struct, frozen=True, kw_only=True):
    """An e-mail's content; the addresses are the rule's, read when it is sent."""

    subject: str
    text: str
    html: str


mail_parts_decoder = msgspec.json.Decoder(MailParts)


def _headline(event: str, count: int, campaign: str | None) -> str:
    jobs = "job" if count == 1 else "jobs"
    calls = "call" if count == 1 else "calls"
    if event == "failed":
        what = f"{count} {jobs} failed"
    elif event == "dead_lettered":
        what = f"{count} {jobs} dead-lettered"
    elif event == "completed":
        what = f"{count} {jobs} completed"
    elif event.startswith("category:"):
        what = f"{count} {calls} matched category {event.removeprefix('category:')}"
    else:
        what = f"{count} {calls} with outcome {event.removeprefix('outcome:')}"
    return what + (f" in campaign {campaign}" if campaign else "")


def _span(items: Sequence[Item], now: datetime) -> str:
    oldest = min(i.at for i in items)
    minutes = max(1, math.ceil((now - oldest).total_seconds() / 60))
    return "minute" if minutes == 1 else f"{minutes} minutes"


class Group(msgspec.Struct, frozen=True):
    event: str
    campaign: str | None
    items: list[Item]


def groups(items: Sequence[Item], rule_events: Sequence[str]) -> list[Group]:
    """The items by (event, campaign), in first-seen order."""
    out: dict[tuple[str, str | None], Group] = {}
    for item in items:
        for event in item.for_rule(rule_events) or item.events[:1]:
            key = (event, item.campaign)
            out.setdefault(key, Group(event, item.campaign, [])).items.append(item)
    return list(out.values())


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One notification: one item told in full, or a digest of several."""

    title: str  # one line
    lines: tuple[str, ...]  # plain text lines
    items: tuple[Item, ...]
    rule_events: tuple[str, ...]
    console_base: str
    test: bool = False

    def link(self, item: Item) -> str:
        return f"{self.console_base}/console/calls/{item.audio_file_id}"


def compose(
    items: Sequence[Item],
    rule_events: Sequence[str],
    *,
    public_base_url: str,
    now: datetime,
) -> Message:
    """The message for what a rule gathered: one item in full, or a digest."""
    base = public_base_url.rstrip("/")
    events = tuple(rule_events)
    if len(items) == 1:
        item = items[0]
        event = (item.for_rule(events) or item.events)[0]
        title = _single_title(event, item)
        return Message(
            title=title,
            lines=_details(item, events),
            items=(item,),
            rule_events=events,
            console_base=base,
        )
    gs = groups(items, events)
    span = _span(items, now)
    heads = [f"{_headline(g.event, len(g.items), g.campaign)} in the last {span}" for g in gs]
    title = heads[0] if len(heads) == 1 else f"{len(items)} notifications in the last {span}"
    lines: list[str] = []
    for g, head in zip(gs[:DIGEST_GROUPS], heads, strict=False):
        shown = ", ".join(i.audio_file_id for i in g.items[:DIGEST_IDS])
        more = len(g.items) - DIGEST_IDS
        lines.append(f"{head}: {shown}" + (f" and {more} more" if more > 0 else ""))
    if len(gs) > DIGEST_GROUPS:
        lines.append(f"and {len(gs) - DIGEST_GROUPS} more kinds")
    return Message(
        title=title, lines=tuple(lines), items=tuple(items), rule_events=events, console_base=base
    )


def test_message(*, public_base_url: str, rule_events: Sequence[str]) -> Message:
    return Message(
        title="Test notification from the transcription gateway",
        lines=(f"This rule notifies on: {', '.join(rule_events)}",),
        items=(),
        rule_events=tuple(rule_events),
        console_base=public_base_url.rstrip("/"),
        test=True,
    )


def _single_title(event: str, item: Item) -> str:
    where = f" in campaign {item.campaign}" if item.campaign else ""
    if event == "failed":
        return f"Job failed{where}: {item.error_code or 'error'}"
    if event == "dead_lettered":
        return f"Job dead-lettered{where}: {item.error_code or 'dead letter'}"
    if event == "completed":
        return f"Job completed{where}"
    if event.startswith("category:"):
        return f"Category {event.removeprefix('category:')}{where}"
    return f"Outcome {event.removeprefix('outcome:')}{where}"


def _details(item: Item, events: Sequence[str]) -> tuple[str, ...]:
    lines = [f"Job: {item.audio_file_id}"]
    if item.campaign:
        lines.append(f"Campaign: {item.campaign}")
    matched = item.for_rule(events)
    if matched:
        lines.append(f"What happened: {', '.join(matched)}")
    if item.error_code:
        lines.append(f"Error: {item.error_code}: {item.error_detail or ''}".rstrip(": "))
    for ev in item.evidence:
        if f"category:{ev.category}" in matched or not matched:
            lines.append(f"Category {ev.category}: \u201c{ev.text}\u201d")
    if item.outcome:
        lines.append(f"Outcome: {item.outcome}")
    if item.duration is not None:
        lines.append(f"Duration: {_duration(item.duration)}")
    lines.append(f"Time: {item.at.strftime('%Y-%m-%d %H:%M:%S UTC')}")
    if item.phone:
        lines.append(f"Phone: {item.phone}")
    if item.recording_id:
        lines.append(f"Recording: {item.recording_id}")
    return tuple(lines)


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60}:{s % 60:02d}"


# ---- Slack --------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """mrkdwn: &, < and > are the only characters Slack wants escaped; a campaign called
    <!channel> must not ping a channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(message: Message) -> dict[str, object]:
    """An incoming-webhook body: `text` (notifications, screen readers) and Block Kit `blocks`
    within Slack's limits."""
    # The fallback `text` is mrkdwn too (escaped); the header is plain_text (taken literally).
    fallback = _cut(_slack_escape("\n".join((message.title, *message.lines))), TEXT_FALLBACK_CHARS)
    blocks: list[dict[str, object]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(message.title, SLACK_HEADER_CHARS)},
        }
    ]
    if len(message.items) == 1:
        item = message.items[0]
        body = "\n".join(_slack_escape(line) for line in message.lines)
        body += f"\n<{message.link(item)}|Open the call in the console>"
        blocks.append(_section(body))
    else:
        for line in message.lines[: SLACK_MAX_BLOCKS - 3]:
            blocks.append(_section(_slack_escape(line)))
        links = " · ".join(
            f"<{message.link(i)}|{i.audio_file_id[:8]}>" for i in message.items[:DIGEST_IDS]
        )
        if links:
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": _cut("First: " + links, SLACK_CONTEXT_CHARS)}
                    ],
                }
            )
    return {"text": fallback, "blocks": blocks[:SLACK_MAX_BLOCKS]}


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SLACK_SECTION_CHARS)}}


def slack_body(message: Message) -> bytes:
    return msgspec.json.encode(slack_payload(message))


# ---- e-mail -------------------------------------------------------------------------------


def subject_line(text: str) -> str:
    """A subject cannot carry a header: every control character (CR, LF, ...) becomes a space."""
    return _cut(" ".join(_CONTROL.sub(" ", text).split()), SUBJECT_CHARS)


def mail_parts(message: Message) -> MailParts:
    links = [f"{i.audio_file_id}: {message.link(i)}" for i in message.items[:DIGEST_IDS]]
    text_lines = [message.title, "", *message.lines]
    if links:
        text_lines += ["", "In the console:", *links]
    text = "\n".join(_CONTROL.sub(" ", line) for line in text_lines) + "\n"
    esc = html.escape
    html_lines = [f"<h2>{esc(message.title)}</h2>", "<ul>"]
    html_lines += [f"<li>{esc(line)}</li>" for line in message.lines]
    html_lines.append("</ul>")
    if message.items:
        html_lines.append("<p>In the console:</p><ul>")
        html_lines += [
            f'<li><a href="{esc(message.link(i))}">{esc(i.audio_file_id)}</a></li>'
            for i in message.items[:DIGEST_IDS]
        ]
        html_lines.append("</ul>")
    return MailParts(
        subject=subject_line(message.title),
        text=text,
        html="<html><body>" + "".join(html_lines) + "</body></html>",
    )


def mail_body(message: Message) -> bytes:
    return msgspec.json.encode(mail_parts(message))
