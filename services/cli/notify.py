"""`transcribe notify ...`: the operator's notification rules (any key, straight in the database,
as `transcribe webhooks`).

add --key K --on EVENT [--on EVENT ...] (--email ADDR [--email ADDR ...] | --slack URL) [--campaign C]
list [--key K]                 rules, with disabled ones and the reason
remove RULE_ID                 remove a rule
test RULE_ID [--wait S]        a test message now; waits for its first attempt
enable RULE_ID                 enable a rule again (after Slack disabled it)
deliveries [--rule RULE_ID]    messages sent, with every attempt
resend DELIVERY_ID             send a message again
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import asyncpg

from libs import params
from libs.errors import InvalidInput
from libs.notifications import items, rules
from libs.settings import Settings
from libs.webhooks import admin
from services.cli.common import text
from services.cli.webhooks import _run

LIST_LIMIT = 200
# `notify test --wait`: as long as the API's test route waits at most, and then some.
MAX_WAIT_SECONDS = 300.0


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rule id: {value!r}") from None


def _delivery_id(value: str) -> int:
    """A delivery id as the API takes one in a path: ASCII digits, at most 18 of them."""
    if not (value.isascii() and value.isdigit()) or len(value) > params.MAX_ID_DIGITS:
        raise argparse.ArgumentTypeError(f"not a delivery id: {value[:40]!a}")
    return int(value)


def _wait(value: str) -> float:
    """Seconds to wait, 0 to MAX_WAIT_SECONDS (float() alone takes inf and nan)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"seconds from 0 to {MAX_WAIT_SECONDS:g}")
    return seconds


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        new = rules.NewRule(
            events=args.on,
            campaign=args.campaign,
            slack_url=args.slack,
            emails=args.email or [],
        ).checked(settings.ssrf_allowlist)
    except InvalidInput as exc:
        print(str(exc), file=sys.stderr)
        return 2

    async def go(conn: asyncpg.Connection) -> object:
        return await rules.create(conn, await admin.find_key(conn, args.key), new)

    return _run(settings, go)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        key_id = await admin.find_key(conn, args.key) if args.key else None
        return await rules.list_(conn, key_id)

    return _run(settings, go)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        await rules.delete(conn, args.rule, None)
        return {"id": str(args.rule), "removed": True}

    return _run(settings, go)


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        await rules.enable(conn, args.rule, None)
        return await rules.get(conn, args.rule, None)

    return _run(settings, go)


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        await rules.get(conn, args.rule, None)
        delivery_id = await items.queue_test(
            conn, args.rule, public_base_url=settings.public_base_url
        )
        body = await admin.get(conn, admin.OPERATOR, delivery_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.wait
        # A running notifier picks it up at once; poll for its first verdict.
        while not body.attempt_log and loop.time() < deadline:
            await asyncio.sleep(0.1)
            body = await admin.get(conn, admin.OPERATOR, delivery_id)
        return body

    return _run(settings, go)


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    return _run(
        settings, lambda c: admin.list_notifications(c, admin.OPERATOR, args.rule, LIST_LIMIT)
    )


def cmd_resend(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        await admin.resend(conn, admin.OPERATOR, args.delivery)
        return {"id": args.delivery, "status": "pending"}

    return _run(settings, go)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    np = sub.add_parser("notify", help="notification rules: Slack and e-mail on events")
    nsub = np.add_subparsers(dest="notify_command", required=True)

    p = nsub.add_parser("add", help="notify a Slack webhook or e-mail addresses on events")
    p.add_argument("--key", required=True, type=text, help="key id or hint (KEY_ID_OR_HINT)")
    p.add_argument(
        "--on",
        action="append",
        required=True,
        metavar="EVENT",
        help="failed, dead_lettered, completed, category:<name>, outcome:<value> (repeatable)",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--email", action="append", metavar="ADDR", help="repeatable")
    target.add_argument("--slack", metavar="URL", help="a Slack incoming-webhook URL")
    p.add_argument("--campaign", help="only jobs of this campaign")
    p.set_defaults(fn=cmd_add)

    p = nsub.add_parser("list", help="rules (disabled ones with the reason)")
    p.add_argument("--key", type=text, help="only this key's (id or hint); default: every key")
    p.set_defaults(fn=cmd_list)

    p = nsub.add_parser("remove", help="remove a rule")
    p.add_argument("rule", type=_uuid)
    p.set_defaults(fn=cmd_remove)

    p = nsub.add_parser("enable", help="enable a rule again")
    p.add_argument("rule", type=_uuid)
    p.set_defaults(fn=cmd_enable)

    p = nsub.add_parser("test", help="send a rule a test message now")
    p.add_argument("rule", type=_uuid)
    p.add_argument("--wait", type=_wait, default=20.0, help="seconds to wait for the answer")
    p.set_defaults(fn=cmd_test)

    p = nsub.add_parser("deliveries", help="notification messages, with every attempt")
    p.add_argument("--rule", type=_uuid, help="only this rule's")
    p.set_defaults(fn=cmd_deliveries)

    p = nsub.add_parser("resend", help="send a notification message again")
    p.add_argument("delivery", type=_delivery_id)
    p.set_defaults(fn=cmd_resend)
