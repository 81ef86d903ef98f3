"""`transcribe webhooks ...`: the operator's view of webhook delivery (any key).

deliveries JOB_ID                 every delivery of a job, with its attempts
show DELIVERY_ID                  one delivery, with its attempts
resend DELIVERY_ID                a new round now (same webhook-id)
recover --since T [--until T] [--key K]   every failed delivery since a time
test --key K [--url URL] [--wait S]       a signed `webhook.test` event
endpoint --key K                  the key's endpoint and its health
enable --key K                    re-enable after 410 / auto-disable
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from libs import params
from libs.errors import DomainError, InvalidInput
from libs.settings import Settings
from libs.webhooks import admin
from services.cli.common import with_conn
from services.cli.replay import with_embedded_stack


def _time(value: str) -> datetime:
    """libs.params' rule (ISO 8601, no zone means UTC), or an age like 2h."""
    try:
        return params.parse_since(value)
    except InvalidInput:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _run(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> int:
    # As `transcribe keys`: the embedded stack of TRANSCRIBE_HOME when DATABASE_URL is unset.
    settings = with_embedded_stack(settings)
    try:
        result = asyncio.run(with_conn(settings, fn))
    except DomainError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(msgspec.to_builtins(result), indent=2))
    return 0


async def _key(conn: asyncpg.Connection, raw: str) -> uuid.UUID:
    return await admin.find_key(conn, raw)


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    try:
        job = uuid.UUID(args.job)
    except ValueError:
        print("JOB_ID must be an audio_file_id (uuid)", file=sys.stderr)
        return 2
    return _run(settings, lambda c: admin.list_for_job(c, admin.OPERATOR, job))


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    return _run(settings, lambda c: admin.get(c, admin.OPERATOR, args.delivery))


def cmd_resend(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        await admin.resend(conn, admin.OPERATOR, args.delivery)
        return {"id": args.delivery, "status": "pending"}

    return _run(settings, go)


def cmd_recover(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        scope = admin.Scope(await _key(conn, args.key)) if args.key else admin.OPERATOR
        return {"recovered": await admin.recover(conn, scope, args.since, args.until)}

    return _run(settings, go)


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    if args.url and _refused(args.url, settings):
        return 2

    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        delivery_id = await admin.send_test(conn, key_id, args.url)
        scope = admin.Scope(key_id)
        body = await admin.get(conn, scope, delivery_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.wait
        # A running notifier picks it up at once; poll for its first verdict.
        while not body.attempt_log and loop.time() < deadline:
            await asyncio.sleep(0.1)
            body = await admin.get(conn, scope, delivery_id)
        return body

    return _run(settings, go)


def cmd_endpoint(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        return await admin.endpoint(conn, await _key(conn, args.key))

    return _run(settings, go)


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        await admin.enable(conn, key_id)
        return await admin.endpoint(conn, key_id)

    return _run(settings, go)


def _refused(url: str, settings: Settings) -> bool:
    try:
        admin.checked_url(url, settings.ssrf_allowlist)
    except InvalidInput as exc:
        print(str(exc), file=sys.stderr)
        return True
    return False


def cmd_set_url(args: argparse.Namespace, settings: Settings) -> int:
    if _refused(args.url, settings):
        return 2

    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        await admin.set_url(conn, key_id, args.url)
        return await admin.endpoint(conn, key_id)

    return _run(settings, go)


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        secret = await admin.rotate_secret(conn, key_id)
        state = await admin.endpoint(conn, key_id)
        return msgspec.structs.replace(state, webhook_secret=secret)

    return _run(settings, go)


def cmd_finish_rotation(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        await admin.finish_rotation(conn, key_id)
        return await admin.endpoint(conn, key_id)

    return _run(settings, go)


def cmd_progress(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> object:
        key_id = await _key(conn, args.key)
        await admin.set_progress(conn, key_id, args.state == "on")
        return await admin.endpoint(conn, key_id)

    return _run(settings, go)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wp = sub.add_parser("webhooks", help="webhook deliveries and endpoints")
    wsub = wp.add_subparsers(dest="webhooks_command", required=True)

    p = wsub.add_parser("deliveries", help="deliveries of a job, with attempts")
    p.add_argument("job", help="audio_file_id")
    p.set_defaults(fn=cmd_deliveries)

    p = wsub.add_parser("show", help="one delivery, with attempts")
    p.add_argument("delivery", type=int)
    p.set_defaults(fn=cmd_show)

    p = wsub.add_parser("resend", help="send one delivery again now (same webhook-id)")
    p.add_argument("delivery", type=int)
    p.set_defaults(fn=cmd_resend)

    p = wsub.add_parser("recover", help="resend every failed delivery created since a time")
    p.add_argument("--since", type=_time, required=True, help="ISO 8601, e.g. 2026-01-31T12:00Z")
    p.add_argument("--until", type=_time)
    p.add_argument("--key", help="only this key (id or hint); default: every key")
    p.set_defaults(fn=cmd_recover)

    p = wsub.add_parser("test", help="send a signed webhook.test event")
    p.add_argument("--key", required=True, help="key id or hint (signs with its secret)")
    p.add_argument("--url", help="default: the key's webhook URL")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the answer")
    p.set_defaults(fn=cmd_test)

    p = wsub.add_parser("endpoint", help="a key's webhook endpoint and its health")
    p.add_argument("--key", required=True)
    p.set_defaults(fn=cmd_endpoint)

    p = wsub.add_parser("enable", help="re-enable a key's disabled webhook endpoint")
    p.add_argument("--key", required=True)
    p.set_defaults(fn=cmd_enable)

    p = wsub.add_parser("set-url", help="set a key's default webhook URL (re-enabled)")
    p.add_argument("--key", required=True)
    p.add_argument("--url", required=True)
    p.set_defaults(fn=cmd_set_url)

    p = wsub.add_parser("rotate-secret", help="new signing secret; the old one keeps signing")
    p.add_argument("--key", required=True)
    p.set_defaults(fn=cmd_rotate)

    p = wsub.add_parser(
        "progress", help="opt a key in (on) or out (off) of transcription.progress webhooks"
    )
    p.add_argument("--key", required=True)
    p.add_argument("state", choices=["on", "off"])
    p.set_defaults(fn=cmd_progress)

    p = wsub.add_parser("finish-rotation", help="stop signing with the previous secret")
    p.add_argument("--key", required=True)
    p.set_defaults(fn=cmd_finish_rotation)
