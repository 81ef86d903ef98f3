"""Notifications, pure parts: rule validation, what a message says (and never says), Slack's
limits and answers."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.contracts import (
    CategoryMatch,
    Evidence,
    Insights,
    InsightsReady,
    TranscriptionFailed,
    new_event_id,
)
from libs.errors import InvalidInput
from libs.notifications import events, message, rules, slack
from libs.notifications.items import JobFacts
from tests.fakes.slack_server import PayloadError, check_payload

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(campaign: str | None = "spring", phone: str | None = "+441632960001") -> JobFacts:
    return JobFacts(
        id=uuid.uuid4(),
        api_key_id=uuid.uuid4(),
        campaign=campaign,
        phone=message.masked_phone(phone),
        recording_id="rec-1",
        status="completed",
        duration=61.0,
    )


def failed(j: JobFacts, detail: str = "the file is not audio") -> TranscriptionFailed:
    return TranscriptionFailed(
        event_id=new_event_id(),
        occurred_at=NOW,
        audio_file_id=str(j.id),
        tenant="t",
        error_code="undecodable_audio",
        detail=detail,
        attempts=1,
        permanent=True,
    )


# ---- rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event", ["failed", "dead_lettered", "completed", "category:cancel", "outcome:sale"]
)
def test_known_events_pass(event: str) -> None:
    assert rules.check_event(event) == event


@pytest.mark.parametrize(
    "event",
    [
        "",
        "fail",
        "category:",
        "outcome:",
        "category:a\r\nb",
        "category:<!channel>",
        "x" * 300,
        "category:" + "a" * 101,
        "category:\x00",
    ],
)
def test_bad_events_are_refused(event: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        rules.check_event(event)
    assert exc.value.code == "invalid_event"
    assert "\r" not in str(exc.value) and "\x00" not in str(exc.value)


def test_a_rule_has_exactly_one_target() -> None:
    with pytest.raises(InvalidInput, match="exactly one target"):
        rules.NewRule(events=["failed"]).checked("")
    with pytest.raises(InvalidInput, match="exactly one target"):
        rules.NewRule(
            events=["failed"], slack_url="https://hooks.slack.com/x", emails=["a@example.com"]
        ).checked("")


def test_too_many_addresses_and_bad_ones() -> None:
    many = [f"p{i}@example.com" for i in range(rules.MAX_EMAILS + 1)]
    with pytest.raises(InvalidInput, match="at most"):
        rules.NewRule(events=["failed"], emails=many).checked("")
    with pytest.raises(InvalidInput):
        rules.NewRule(events=["failed"], emails=["not an address"]).checked("")


def test_slack_url_passes_the_ssrf_policy() -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/hook", "file:///etc/passwd"):
        with pytest.raises(InvalidInput) as exc:
            rules.NewRule(events=["failed"], slack_url=url).checked("")
        assert exc.value.code.startswith("url_")
    ok = rules.NewRule(events=["failed"], slack_url="http://127.0.0.1:9/x").checked("127.0.0.1:9")
    assert ok.slack_url == "http://127.0.0.1:9/x" and ok.target == "slack"


def test_text_postgres_cannot_store_is_refused() -> None:
    for kw in (
        {"slack_url": "https://hooks.slack.com/\ud800"},
        {"slack_url": "https://hooks.slack.com/" + "a" * 3000},
        {"emails": ["a@example.com"], "campaign": "x\ud800"},
        {"emails": ["a@example.com"], "campaign": "x\x00"},
    ):
        with pytest.raises(InvalidInput):
            rules.NewRule(events=["failed"], **kw).checked("")  # type: ignore[arg-type]


def test_campaign_with_control_characters_is_refused() -> None:
    with pytest.raises(InvalidInput):
        rules.NewRule(
            events=["failed"], campaign="x\r\nBcc: a@b.c", emails=["a@example.com"]
        ).checked("")


def test_slack_url_is_never_shown_in_full() -> None:
    shown = rules.shown_slack_url("https://hooks.slack.com/services/T1/B2/SECRET")
    assert shown == "https://hooks.slack.com/…"


def test_an_http_error_quoting_the_slack_url_keeps_its_token_out() -> None:
    url = "https://hooks.slack.com/services/T1/B2/SECRETtoken?x=1"
    for said in (
        f"connect_failed: request failed: 500, message='x', url='{url}'",
        "malformed_url: URL rejected by HTTP client: /services/T1/B2/SECRETtoken?x=1",
        "protocol_error: services/T1/B2/SECRETtoken broke",
    ):
        kept = rules.without_slack_url(said, url)
        assert "SECRET" not in kept and "T1/B2" not in kept, kept
    assert rules.without_slack_url(f"x {url} y", url) == "x https://hooks.slack.com/… y"
    assert rules.without_slack_url("timeout: no answer in 10 s", url) == (
        "timeout: no answer in 10 s"
    )


# ---- what a message says ------------------------------------------------------------------


def test_phone_is_masked() -> None:
    assert message.masked_phone("+441632960001") == "+•••••••••001"
    assert message.masked_phone(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "my card is 4111 1111 1111 1111 thanks",
        "card #### #### #### 1111 ok",
        "number 4111-1111-1111-1111",
        "call me on 07700 900123",
    ],
)
def test_scrubbed_text_keeps_no_long_digit_runs(text: str) -> None:
    out = message.scrubbed(text)
    assert not re.search(r"\d{4}", out.replace(" ", "")), out
    assert "[redacted]" in out


def test_failed_item_single_message() -> None:
    j = job()
    item = events.item_for(failed(j), j)
    assert item is not None and item.events == ("failed",)
    msg = message.compose([item], ["failed"], public_base_url="https://gw.example/", now=NOW)
    assert str(j.id) in "\n".join(msg.lines)
    assert "undecodable_audio" in msg.title
    parts = message.mail_parts(msg)
    assert "undecodable_audio: the file is not audio" in parts.text
    assert f"https://gw.example/console/calls/{j.id}" in parts.text
    assert "+441632960001" not in parts.text and "001" in parts.text


def test_digest_counts_and_names_the_first_ids() -> None:
    items = []
    for i in range(37):
        j = job(campaign="X")
        it = events.item_for(failed(j), j)
        assert it is not None
        items.append(message.Item(**{**_fields(it), "at": NOW - timedelta(minutes=9, seconds=i)}))
    msg = message.compose(items, ["failed"], public_base_url="https://gw", now=NOW)
    assert msg.title == "37 jobs failed in campaign X in the last 10 minutes"
    assert msg.lines[0].count(",") == message.DIGEST_IDS - 1
    assert msg.lines[0].endswith("and 32 more")
    payload = message.slack_payload(msg)
    check_payload(payload)


def _fields(item: message.Item) -> dict[str, object]:
    return {f: getattr(item, f) for f in item.__struct_fields__}


def insights_event(j: JobFacts, text: str, campaign: str | None = None) -> InsightsReady:
    return InsightsReady(
        event_id=new_event_id(),
        occurred_at=NOW,
        audio_file_id=str(j.id),
        tenant="t",
        status="completed",
        campaign=campaign,
        categories=(
            CategoryMatch(name="cancel", matches=(Evidence(start=1.0, end=2.0, text=text),)),
        ),
        insights=Insights(model="m", outcome="churn"),
    )


def test_category_item_carries_evidence_but_no_card_digits() -> None:
    j = job()
    # A redacted transcript keeping the last four (substitution=last4), and a number the
    # detector missed: neither reaches a notification.
    ev = insights_event(j, "I want to cancel, card #### #### #### 4242 or 4000056655665556")
    item = events.item_for(ev, j)
    assert item is not None
    assert item.events == ("category:cancel", "outcome:churn")
    msg = message.compose([item], ["category:cancel"], public_base_url="https://gw", now=NOW)
    rendered = json.dumps(message.slack_payload(msg)) + message.mail_parts(msg).text
    assert "I want to cancel" in rendered
    assert "4242" not in rendered and "5556" not in rendered
    check_payload(message.slack_payload(msg))


def test_slack_payload_stays_within_limits_for_huge_input() -> None:
    j = job(campaign="c" * 200)
    item = events.item_for(insights_event(j, "word " * 2000), j)
    assert item is not None
    huge = [message.Item(**{**_fields(item), "events": (f"category:k{i}",)}) for i in range(200)]
    for items in ([item], huge):
        payload = message.slack_payload(
            message.compose(
                items,
                [f"category:k{i}" for i in range(200)] + ["category:cancel"],
                public_base_url="https://gw",
                now=NOW,
            )
        )
        check_payload(payload)
        blocks = payload["blocks"]
        assert isinstance(blocks, list) and len(blocks) <= message.SLACK_MAX_BLOCKS


def test_slack_mrkdwn_cannot_ping_or_link() -> None:
    j = job(campaign="<!channel> <https://evil|click>")
    item = events.item_for(failed(j), j)
    assert item is not None
    payload = message.slack_payload(
        message.compose([item], ["failed"], public_base_url="https://gw", now=NOW)
    )
    blocks = payload["blocks"]
    assert isinstance(blocks, list) and blocks[0]["type"] == "header"  # plain_text: literal
    mrkdwn = json.dumps(blocks[1:]) + str(payload["text"])
    assert "<!channel>" not in mrkdwn and "&lt;!channel&gt;" in mrkdwn


def test_subject_cannot_carry_a_header() -> None:
    j = job(campaign="x\r\nBcc: x@y")
    item = events.item_for(failed(j), j)
    assert item is not None
    parts = message.mail_parts(
        message.compose([item], ["failed"], public_base_url="https://gw", now=NOW)
    )
    assert "\r" not in parts.subject and "\n" not in parts.subject
    assert "\r\nBcc" not in parts.text


def test_outside_slack_limits_the_fake_refuses() -> None:
    with pytest.raises(PayloadError) as exc:
        check_payload({"text": "x", "blocks": [{"type": "divider"}] * 51})
    assert exc.value.code == "invalid_blocks"
    with pytest.raises(PayloadError) as exc:
        check_payload({"blocks": None})
    assert exc.value.code == "no_text"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ok"),
        (400, "disable"),
        (403, "disable"),
        (404, "disable"),
        (410, "disable"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_slack_answers(status: int, verdict: str) -> None:
    assert slack.judge(status, b"whatever") == verdict


def test_slack_reason_is_safe_text() -> None:
    assert slack.reason(404, b"no_service") == "Slack answered 404 no_service"
    assert "\n" not in slack.reason(400, b"invalid_payload\r\nX: y")
