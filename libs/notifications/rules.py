"""Notification rules (`notification_rules`, its one owner): which events of a key notify whom.

A rule belongs to an API key (and so to its tenant): a key sees and removes only its own; the
operator's (bootstrap) key sees every one. Validation happens once, in `NewRule.checked`, for
the API and the CLI alike.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, TypeAlias

import asyncpg
import msgspec

from libs import errors
from libs.formats import DateTime, Uri, Uuid, described
from libs.mail import validate_address
from libs.safehttp import BlockedUrl, parse_allowlist, validate_url

# At most this many e-mail addresses per rule, events per rule, rules per key.
MAX_EMAILS = 10
MAX_EVENTS = 20
MAX_RULES_PER_KEY = 100
MAX_NAME_CHARS = 100
MAX_CAMPAIGN_CHARS = 200
MAX_URL_CHARS = 2000
PLAIN_EVENTS = ("failed", "dead_lettered", "completed")
PREFIXED_EVENTS = ("category:", "outcome:")
# Letters, digits and a few separators: a category's or an outcome's name, nothing that could
# be read as markup or a header.
_NAME = re.compile(r"[\w .\-/+&']+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Target = Literal["slack", "email"]

_COLUMNS = """
id, api_key_id, tenant_prefix, events, campaign, target, slack_url, emails, disabled_at,
disabled_reason, created_at
"""
INSERT = """
INSERT INTO media_pipeline.notification_rules
    (id, api_key_id, tenant_prefix, events, campaign, target, slack_url, emails)
SELECT $1, k.id, k.tenant_prefix, $3, $4, $5, $6, $7
FROM media_pipeline.api_keys k
WHERE k.id = $2 AND k.revoked_at IS NULL
  AND (SELECT count(*) FROM media_pipeline.notification_rules r WHERE r.api_key_id = $2) < $8
RETURNING id, api_key_id, tenant_prefix, events, campaign, target, slack_url, emails,
          disabled_at, disabled_reason, created_at
"""
# $1: the key whose rules to show, NULL for every rule (the operator).
LIST = (
    "SELECT"
    + _COLUMNS
    + """FROM media_pipeline.notification_rules
WHERE ($1::uuid IS NULL OR api_key_id = $1)
ORDER BY created_at, id
"""
)
GET = (
    "SELECT"
    + _COLUMNS
    + """FROM media_pipeline.notification_rules
WHERE id = $1 AND ($2::uuid IS NULL OR api_key_id = $2)
"""
)
DELETE = """
DELETE FROM media_pipeline.notification_rules
WHERE id = $1 AND ($2::uuid IS NULL OR api_key_id = $2)
RETURNING id
"""
DISABLE = """
UPDATE media_pipeline.notification_rules
SET disabled_at = now(), disabled_reason = left($2, 300)
WHERE id = $1 AND disabled_at IS NULL
"""
ENABLE = """
UPDATE media_pipeline.notification_rules SET disabled_at = NULL, disabled_reason = NULL
WHERE id = $1 AND ($2::uuid IS NULL OR api_key_id = $2)
RETURNING id
"""
KEY_EXISTS = "SELECT count(*) FROM media_pipeline.api_keys WHERE id = $1 AND revoked_at IS NULL"


class NotFound(errors.NotFound):
    """No such rule, or not the caller's."""

    code = "no_such_rule"


class TooManyRules(errors.Conflict):
    code = "too_many_rules"


def check_event(raw: str) -> str:
    """One event name: failed, dead_lettered, completed, category:<name>, outcome:<value>."""
    if raw in PLAIN_EVENTS:
        return raw
    for prefix in PREFIXED_EVENTS:
        if raw.startswith(prefix):
            name = raw[len(prefix) :].strip()
            if not name or len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name):
                raise errors.InvalidInput(
                    f"{prefix}<name>: the name must be 1 to {MAX_NAME_CHARS} letters, digits, "
                    "spaces or . - / + & '",
                    code="invalid_event",
                )
            return prefix + name
    raise errors.InvalidInput(
        f"unknown event {_shown(raw)}: use failed, dead_lettered, completed, category:<name> "
        "or outcome:<value>",
        code="invalid_event",
    )


def _encodable(text: str) -> bool:
    """UTF-8 can hold it (no lone surrogates, which JSON escapes can spell)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(raw: str) -> str:
    return repr(_CONTROL.sub("?", raw[:60]))


def check_slack_url(url: str, ssrf_allowlist: str) -> str:
    """An incoming-webhook URL the SSRF policy lets us POST to (as webhook endpoints)."""
    if len(url) > MAX_URL_CHARS or _CONTROL.search(url) or not _encodable(url):
        raise errors.InvalidInput(
            f"slack_url must be a URL of at most {MAX_URL_CHARS} characters",
            code="url_malformed_url",
        )
    try:
        validate_url(url, parse_allowlist(ssrf_allowlist))
    except BlockedUrl as exc:
        raise errors.InvalidInput(
            f"slack_url refused: {exc.message}", code=f"url_{exc.code}"
        ) from exc
    return url


class NewRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule to create: the events, and exactly one target (slack_url or emails)."""

    events: Annotated[
        list[str],
        described(
            "failed, dead_lettered, completed, category:<name>, outcome:<value> (at least one)"
        ),
    ]
    campaign: Annotated[str | None, described("only jobs of this campaign")] = None
    slack_url: Annotated[Uri | None, described("a Slack incoming-webhook URL")] = None
    emails: Annotated[list[str], described(f"e-mail addresses (at most {MAX_EMAILS})")] = []

    def checked(self, ssrf_allowlist: str) -> NewRule:
        """The rule with normalised events and addresses; InvalidInput names what is wrong."""
        if not self.events:
            raise errors.InvalidInput("give at least one event", code="invalid_event")
        if len(self.events) > MAX_EVENTS:
            raise errors.InvalidInput(f"at most {MAX_EVENTS} events", code="invalid_event")
        events = list(dict.fromkeys(check_event(e) for e in self.events))
        campaign = self.campaign
        if campaign is not None and (
            not campaign
            or len(campaign) > MAX_CAMPAIGN_CHARS
            or _CONTROL.search(campaign)
            or not _encodable(campaign)
        ):
            raise errors.InvalidInput(
                f"campaign must be 1 to {MAX_CAMPAIGN_CHARS} characters, no control characters",
                code="invalid_campaign",
            )
        if (self.slack_url is None) == (not self.emails):
            raise errors.InvalidInput(
                "give exactly one target: slack_url or emails", code="invalid_target"
            )
        if self.slack_url is not None:
            return NewRule(
                events=events,
                campaign=campaign,
                slack_url=check_slack_url(self.slack_url, ssrf_allowlist),
            )
        if len(self.emails) > MAX_EMAILS:
            raise errors.InvalidInput(
                f"at most {MAX_EMAILS} e-mail addresses", code="invalid_target"
            )
        emails = list(dict.fromkeys(validate_address(a) for a in self.emails))
        return NewRule(events=events, campaign=campaign, emails=emails)

    @property
    def target(self) -> Target:
        return "slack" if self.slack_url is not None else "email"


def shown_slack_url(url: str | None) -> str | None:
    """A Slack URL is a secret (whoever has it can post): only its scheme and host are shown."""
    if url is None:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"


def without_slack_url(text: str, url: str) -> str:
    """`text` (an HTTP client's error, kept in the delivery log and the logs) with the secret
    part of `url` (its path and query: the token) masked, wherever and however it appears."""
    scheme, _, rest = url.partition("://")
    host, _, secret = rest.partition("/")
    shown = f"{scheme}://{host}/…"
    for part in sorted({url, f"/{secret}", secret, secret.split("?", 1)[0]}, key=len, reverse=True):
        if len(part) > 1:
            text = text.replace(part, shown if part == url else "…")
    return text


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """A notification rule and its state (disabled with the reason, e.g. Slack's answer)."""

    id: Uuid
    key_id: Uuid
    tenant: str
    events: list[str]
    campaign: str | None
    target: Target
    slack: Annotated[
        str | None,
        described("the Slack webhook's scheme and host only: the full URL is a secret"),
    ]
    emails: list[str]
    enabled: bool
    disabled_at: DateTime | None
    disabled_reason: str | None
    created_at: DateTime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Rule:
        disabled: datetime | None = row["disabled_at"]
        return cls(
            id=str(row["id"]),
            key_id=str(row["api_key_id"]),
            tenant=row["tenant_prefix"],
            events=list(row["events"]),
            campaign=row["campaign"],
            target=row["target"],
            slack=shown_slack_url(row["slack_url"]),
            emails=list(row["emails"]),
            enabled=disabled is None,
            disabled_at=disabled.isoformat() if disabled else None,
            disabled_reason=row["disabled_reason"],
            created_at=row["created_at"].isoformat(),
        )


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a rule's messages go, read at send time (never copied into the delivery log)."""

    id: uuid.UUID
    target: Target
    slack_url: str | None
    emails: tuple[str, ...]
    disabled: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Destination:
        return cls(
            id=row["id"],
            target=row["target"],
            slack_url=row["slack_url"],
            emails=tuple(row["emails"]),
            disabled=row["disabled_at"] is not None,
        )


Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def create(conn: Conn, api_key_id: uuid.UUID, rule: NewRule) -> Rule:
    """Store an already checked rule for the key."""
    row = await conn.fetchrow(
        INSERT,
        uuid.uuid4(),
        api_key_id,
        rule.events,
        rule.campaign,
        rule.target,
        rule.slack_url,
        rule.emails,
        MAX_RULES_PER_KEY,
    )
    if row is None:
        if not await conn.fetchval(KEY_EXISTS, api_key_id):
            raise errors.NotFound("no such key", code="no_such_key")
        raise TooManyRules(f"a key has at most {MAX_RULES_PER_KEY} notification rules")
    return Rule.from_row(row)


async def list_(conn: Conn, api_key_id: uuid.UUID | None) -> list[Rule]:
    """The key's rules; None: every rule (the operator)."""
    return [Rule.from_row(r) for r in await conn.fetch(LIST, api_key_id)]


async def get(conn: Conn, rule_id: uuid.UUID, api_key_id: uuid.UUID | None) -> Rule:
    row = await conn.fetchrow(GET, rule_id, api_key_id)
    if row is None:
        raise NotFound("no such notification rule")
    return Rule.from_row(row)


async def destination(conn: Conn, rule_id: uuid.UUID) -> Destination | None:
    row = await conn.fetchrow(GET, rule_id, None)
    return None if row is None else Destination.from_row(row)


async def delete(conn: Conn, rule_id: uuid.UUID, api_key_id: uuid.UUID | None) -> None:
    """Remove the rule (its waiting events with it; its delivery log stays)."""
    if await conn.fetchval(DELETE, rule_id, api_key_id) is None:
        raise NotFound("no such notification rule")


async def disable(conn: Conn, rule_id: uuid.UUID, reason: str) -> None:
    """Stop the rule (Slack said the webhook is gone, ...); the reason is shown in lists."""
    await conn.execute(DISABLE, rule_id, reason)


async def enable(conn: Conn, rule_id: uuid.UUID, api_key_id: uuid.UUID | None) -> None:
    if await conn.fetchval(ENABLE, rule_id, api_key_id) is None:
        raise NotFound("no such notification rule")
