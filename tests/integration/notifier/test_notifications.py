"""Notifications to people, as the issue's "done when" says, on real Postgres and NATS with the
notifier running as in production: e-mail to a real SMTP server (tests/mail_fixtures.py, with
STARTTLS and a certificate the fixture makes), Slack to tests/fakes/slack_server.py (Slack's
payload rules and answers)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import msgspec
import pytest
import structlog
from nats.js import JetStreamContext

from libs import apikeys
from libs.contracts import (
    CategoryMatch,
    Evidence,
    InsightsReady,
    encode,
    new_event_id,
    subjects,
    utcnow,
)
from libs.jobs import deletion
from libs.notifications import rules
from libs.settings import Settings
from services.cli import main
from tests.fakes.slack_server import Answer, SlackServer
from tests.integration.notifier.harness import (
    Job,
    Key,
    Notifier,
    failed_event,
    make_job,
    make_key,
    publish,
)
from tests.mail_fixtures import Received, SmtpTestServer
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def slack() -> AsyncIterator[SlackServer]:
    async with SlackServer() as server:
        yield server


def _running(notifier: Notifier, smtp: SmtpTestServer | None, *allow: str) -> Notifier:
    if smtp is not None:
        mail = smtp.settings()
        notifier.settings = replace(
            notifier.settings,
            smtp_url=mail.smtp_url,
            smtp_from=mail.smtp_from,
            smtp_ca_file=mail.smtp_ca_file,
        )
    notifier.configure(*allow)
    notifier.start()
    return notifier


async def _mails(smtp: SmtpTestServer, count: int, timeout: float = 30.0) -> list[Received]:
    async def arrived() -> list[Received] | None:
        return smtp.received if len(smtp.received) >= count else None

    return await eventually(arrived, timeout=timeout)


async def _rule(
    pool: asyncpg.Pool,
    key: Key,
    events: list[str],
    *,
    slack_url: str | None = None,
    emails: list[str] | None = None,
    campaign: str | None = None,
    allow: str = "",
) -> rules.Rule:
    new = rules.NewRule(
        events=events, slack_url=slack_url, emails=emails or [], campaign=campaign
    ).checked(allow)
    return await rules.create(pool, key.id, new)


async def _items(pool: asyncpg.Pool, rule: rules.Rule) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM media_pipeline.notification_items WHERE rule_id = $1 ORDER BY id",
        uuid.UUID(rule.id),
    )


async def _interval_passes(pool: asyncpg.Pool, rule: rules.Rule) -> None:
    """As if NOTIFY_INTERVAL_SECONDS had gone by since the rule's last message."""
    await pool.execute(
        "UPDATE media_pipeline.notification_rules SET quiet_until = now() WHERE id = $1",
        uuid.UUID(rule.id),
    )


async def _drained(js: JetStreamContext) -> None:
    """Every event published so far was handled (acked) by the notifier's consumer."""

    async def idle() -> bool:
        info = await js.consumer_info("TRANSCRIBE", "notifier")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(idle, timeout=30)


async def _failed_jobs(pool: asyncpg.Pool, key: Key, n: int) -> list[Job]:
    return [await make_job(pool, key, completed=False) for _ in range(n)]


async def test_a_failed_job_mails_once_and_a_replay_sends_nothing_more(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier, smtp_starttls: SmtpTestServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    (job,) = await _failed_jobs(npool, key, 1)
    _running(notifier, smtp_starttls)
    event = failed_event(job)
    await publish(js, event)
    (received,) = await _mails(smtp_starttls, 1)
    assert received.rcpt_tos == ("ops@example.com",) and received.tls
    mail = received.message
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "undecodable_audio" in mail["Subject"]
    assert str(job.id) in text and "undecodable_audio: the file is not audio" in text
    assert str(job.id) in html and mail["Message-ID"] and mail["Date"]
    # The phone is masked; the console link points at the call.
    assert "+441632960001" not in text and "001" in text
    assert f"https://gateway.example/console/calls/{job.id}" in text

    # The same event again (a replay with `nats pub`, not de-duplicated by JetStream), with
    # the rule's quiet period over: still one item, one mail.
    await _interval_passes(npool, rule)
    await publish(js, event, msg_id=False)
    await _drained(js)
    assert len(await _items(npool, rule)) == 1
    deliveries = await npool.fetch(
        "SELECT status FROM media_pipeline.webhook_deliveries WHERE rule_id = $1",
        uuid.UUID(rule.id),
    )
    assert [d["status"] for d in deliveries] == ["succeeded"]
    assert len(smtp_starttls.received) == 1


async def test_200_failures_within_the_interval_give_one_digest(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier, smtp_starttls: SmtpTestServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    jobs = await _failed_jobs(npool, key, 201)
    _running(notifier, smtp_starttls)
    await publish(js, failed_event(jobs[0]))
    await _mails(smtp_starttls, 1)
    # 200 more within the interval: gathered, not sent.
    for job in jobs[1:]:
        await publish(js, failed_event(job))

    async def all_recorded() -> bool:
        return len(await _items(npool, rule)) == 201

    await eventually(all_recorded, timeout=60)
    assert len(smtp_starttls.received) == 1
    await _interval_passes(npool, rule)
    digest = (await _mails(smtp_starttls, 2))[1].message
    subject = str(digest["Subject"])
    assert subject.startswith("200 jobs failed in campaign notifier-tests in the last"), subject
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    shown = [str(j.id) for j in jobs[1:] if str(j.id) in text]
    assert len(shown) == 5 and "and 195 more" in text
    assert all(r["sent_at"] is not None for r in await _items(npool, rule))
    assert len(smtp_starttls.received) == 2


def _insights(job: Job, text: str) -> InsightsReady:
    return InsightsReady(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        audio_file_id=str(job.id),
        tenant=job.key.tenant,
        status="not_configured",
        campaign="notifier-tests",
        categories=(
            CategoryMatch(name="cancel", matches=(Evidence(start=3.0, end=5.5, text=text),)),
        ),
    )


async def test_a_category_match_posts_one_slack_message_without_card_digits(
    npool: asyncpg.Pool,
    js: JetStreamContext,
    notifier: Notifier,
    smtp_starttls: SmtpTestServer,
    slack: SlackServer,
) -> None:
    key = await make_key(npool, webhook_url=None)
    await _rule(
        npool,
        key,
        ["category:cancel"],
        slack_url=slack.url,
        allow=slack.hostport,
        campaign="notifier-tests",
    )
    job = await make_job(npool, key)
    _running(notifier, None, slack.hostport)
    # The transcript was redacted keeping the last four digits (substitution=last4).
    event = _insights(job, "please cancel my plan, card #### #### #### 4242")
    await js.publish(subjects.insights_ready(job.key.tenant), encode(event))
    (payload,) = await slack.wait_messages(1)
    # Passed the receiver's checks (Block Kit limits); the text fallback and the blocks.
    assert isinstance(payload["text"], str) and payload["blocks"][0]["type"] == "header"
    body = json.dumps(payload)
    assert "please cancel my plan" in body and "4242" not in body
    assert f"https://gateway.example/console/calls/{job.id}" in body
    await js.publish(subjects.insights_ready(job.key.tenant), encode(event))
    await _drained(js)
    assert len(slack.requests) == 1


SPOKEN_CARD = "four one one one " + "one " * 11 + "one"
SPOKEN_PHONE = "four one five five five five zero one three two"


async def test_spoken_card_phone_and_email_in_evidence_or_an_error_never_reach_slack_or_mail(
    npool: asyncpg.Pool,
    js: JetStreamContext,
    notifier: Notifier,
    smtp_starttls: SmtpTestServer,
    slack: SlackServer,
) -> None:
    # A job without a redaction policy: its evidence is the call's words as said. The
    # notification still carries no card number, phone number or address, however said.
    key = await make_key(npool, webhook_url=None)
    await _rule(npool, key, ["category:cancel"], slack_url=slack.url, allow=slack.hostport)
    await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    job = await make_job(npool, key)
    (failed_job,) = await _failed_jobs(npool, key, 1)
    _running(notifier, smtp_starttls, slack.hostport)
    said = f"cancel it, my card is {SPOKEN_CARD}, call {SPOKEN_PHONE} or jo.doe@example.com"
    await js.publish(subjects.insights_ready(job.key.tenant), encode(_insights(job, said)))
    # An engine error that echoes what it was given.
    failed = msgspec.structs.replace(
        failed_event(failed_job), detail=f"engine rejected prompt: {said}"
    )
    await publish(js, failed)
    (payload,) = await slack.wait_messages(1)
    (received,) = await _mails(smtp_starttls, 1)
    mail = received.message
    sent = "\n".join(
        [
            json.dumps(payload),
            mail["Subject"],
            mail.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
            mail.get_body(("html",)).get_content(),  # type: ignore[union-attr]
        ]
    )
    assert "cancel it, my card is [redacted]" in sent
    for value in ("four one one one", "one one one one", "five five zero", "jo.doe", "example.com"):
        assert value not in sent, value


async def test_slack_404_no_service_disables_the_rule_with_the_reason(
    npool: asyncpg.Pool,
    js: JetStreamContext,
    notifier: Notifier,
    smtp_starttls: SmtpTestServer,
    slack: SlackServer,
    notifier_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], slack_url=slack.url, allow=slack.hostport)
    (job,) = await _failed_jobs(npool, key, 1)
    slack.script.append(Answer(404, "no_service"))
    _running(notifier, None, slack.hostport)
    await publish(js, failed_event(job))

    async def disabled() -> rules.Rule | None:
        r = await rules.get(npool, uuid.UUID(rule.id), None)
        return r if not r.enabled else None

    state = await eventually(disabled)
    assert state.disabled_reason == "Slack answered 404 no_service"
    assert len(slack.requests) == 1

    await notifier.stop()
    capsys.readouterr()
    monkeypatch.setenv("DATABASE_URL", notifier_settings.require_database_url())
    saved = structlog.get_config()
    try:
        code = await asyncio.to_thread(
            main, ["--log-format", "console", "notify", "list", "--key", str(key.id)]
        )
    finally:
        # main() logs onto the captured stdout; the fixtures' teardown logs after it closes.
        structlog.configure(**saved)
    listed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(r["id"], r["enabled"], r["disabled_reason"]) for r in listed] == [
        (rule.id, False, "Slack answered 404 no_service")
    ]


async def test_slack_429_waits_for_retry_after_and_5xx_is_retried(
    npool: asyncpg.Pool,
    js: JetStreamContext,
    notifier: Notifier,
    smtp_starttls: SmtpTestServer,
    slack: SlackServer,
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], slack_url=slack.url, allow=slack.hostport)
    (job,) = await _failed_jobs(npool, key, 1)
    slack.script += [Answer(429, "rate_limited", {"Retry-After": "2"}), Answer(500, "oops")]
    _running(notifier, None, slack.hostport)
    await publish(js, failed_event(job))
    await slack.wait_messages(1)

    async def three() -> list[asyncpg.Record] | None:
        got = await npool.fetch(
            "SELECT a.attempted_at, a.status_code FROM media_pipeline.webhook_attempts a"
            " JOIN media_pipeline.webhook_deliveries d ON d.id = a.delivery_id"
            " WHERE d.rule_id = $1 ORDER BY a.attempt",
            uuid.UUID(rule.id),
        )
        return got if len(got) == 3 else None

    rows = await eventually(three)
    assert [r["status_code"] for r in rows] == [429, 500, 200]
    # The schedule says 0.2 s; Slack's Retry-After said 2 s: not sooner.
    assert (rows[1]["attempted_at"] - rows[0]["attempted_at"]).total_seconds() >= 1.9
    assert (await rules.get(npool, uuid.UUID(rule.id), None)).enabled


async def test_a_campaign_name_cannot_add_a_mail_header(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier, smtp_starttls: SmtpTestServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    (job,) = await _failed_jobs(npool, key, 1)
    await npool.execute(
        "UPDATE media_pipeline.audio_files SET campaign_name = $2 WHERE id = $1",
        job.id,
        "spring\r\nBcc: x@y.example",
    )
    _running(notifier, smtp_starttls)
    await publish(js, failed_event(job))
    (received,) = await _mails(smtp_starttls, 1)
    # The envelope and the headers as the SMTP server got them: one recipient, no Bcc.
    assert received.rcpt_tos == ("ops@example.com",)
    headers = received.data.split(b"\r\n\r\n", 1)[0].decode()
    names = [
        line.split(":", 1)[0].lower()
        for line in headers.split("\r\n")
        if line[:1] not in (" ", "\t")  # a folded line continues the header above
    ]
    assert "bcc" not in names and names.count("subject") == 1 and names.count("to") == 1
    assert "spring" in str(received.message["Subject"])


async def test_deleting_a_job_forgets_its_notifications(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier, smtp_starttls: SmtpTestServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    first, second = await _failed_jobs(npool, key, 2)
    _running(notifier, smtp_starttls)
    await publish(js, failed_event(first))
    await _mails(smtp_starttls, 1)
    # The second waits for the next message (the rule's quiet period); then its job is deleted.
    await publish(js, failed_event(second))

    async def waiting() -> bool:
        return len(await _items(npool, rule)) == 2

    await eventually(waiting)
    async with npool.acquire() as conn, conn.transaction():
        assert await deletion.request(
            conn, second.id, api_key_id=None, requested_by="test", reason="api"
        )
    assert [r["audio_file_id"] for r in await _items(npool, rule)] == [first.id]
    await _interval_passes(npool, rule)
    await publish(js, failed_event(second), msg_id=False)  # a late replay: not announced
    await _drained(js)
    assert [r["audio_file_id"] for r in await _items(npool, rule)] == [first.id]
    assert len(smtp_starttls.received) == 1


async def test_a_revoked_keys_rules_notify_nobody(
    npool: asyncpg.Pool, js: JetStreamContext, notifier: Notifier, smtp_starttls: SmtpTestServer
) -> None:
    key = await make_key(npool, webhook_url=None)
    rule = await _rule(npool, key, ["failed"], emails=["ops@example.com"])
    (job,) = await _failed_jobs(npool, key, 1)
    async with npool.acquire() as conn:
        assert await apikeys.revoke(conn, str(key.id))
    _running(notifier, smtp_starttls)
    await publish(js, failed_event(job))
    await _drained(js)
    assert await _items(npool, rule) == []
