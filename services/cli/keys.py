"""`transcribe keys ...`: API keys (printed once, stored hashed), each with its webhook signing
secret (printed once at creation; `transcribe webhooks rotate-secret` makes a new one).

Like the other operator commands, these find the embedded stack of TRANSCRIBE_HOME when
DATABASE_URL is unset, and check a webhook URL exactly as the API does (SSRF policy and
SSRF_ALLOWLIST)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import asyncpg

from libs import apikeys, params
from libs.errors import InvalidInput
from libs.redaction import Policy
from libs.settings import Settings
from libs.transcript.conversation import DEFAULT_CHANNEL_ROLES, parse_roles
from libs.webhooks import admin
from services.cli.common import with_conn
from services.cli.replay import with_embedded_stack


def _key_json(key: apikeys.ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.key_hint,
        "tenant_prefix": key.tenant_prefix,
        "bootstrap": key.is_bootstrap,
        "webhook_url": key.webhook_url,
        "webhook_disabled": key.webhook_disabled_at is not None,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "audio_ttl_seconds": key.audio_ttl_seconds,
        "transcript_ttl_seconds": key.transcript_ttl_seconds,
        "created_at": key.created_at.isoformat(),
        "revoked": key.revoked_at is not None,
        "channel_roles": list(key.channel_roles or DEFAULT_CHANNEL_ROLES),
        "redact": key.redact,
    }


def _ttl(value: str | None, name: str) -> int | None:
    """A TTL option: a duration (7d, 36h, 90m, seconds); `none` (or absent) keeps forever."""
    if value is None or value.strip().lower() == "none":
        return None
    return params.parse_duration(value, name)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        audio_ttl = _ttl(args.audio_ttl, "audio_ttl")
        transcript_ttl = _ttl(args.transcript_ttl, "transcript_ttl")
    except InvalidInput as exc:
        print(f"cannot create the key: {exc.detail}", file=sys.stderr)
        return 2
    if args.webhook_url is not None:
        try:
            admin.checked_url(args.webhook_url, settings.ssrf_allowlist)
        except InvalidInput as exc:
            print(f"cannot create the key: {exc.detail}", file=sys.stderr)
            return 2

    try:
        redact = _policy(args)
    except InvalidInput as exc:
        print(f"cannot create the key: {exc.detail}", file=sys.stderr)
        return 2

    async def go(conn: asyncpg.Connection) -> tuple[str, apikeys.ApiKey]:
        return await apikeys.create(
            conn,
            name=args.name,
            tenant_prefix=args.prefix,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            rate_limit_per_minute=args.rate_limit,
            unscoped=args.unscoped,
            audio_ttl_seconds=audio_ttl,
            transcript_ttl_seconds=transcript_ttl,
            channel_roles=args.channel_roles,
            redact=redact,
        )

    try:
        raw, key = asyncio.run(with_conn(settings, go))
    except apikeys.InvalidKeySettings as exc:
        print(f"cannot create the key: {exc}", file=sys.stderr)
        return 2
    # Every key signs its webhooks (its own endpoint, callback_urls, test events).
    out = _key_json(key) | {"api_key": raw, "webhook_secret": key.webhook_secret}
    print(json.dumps(out, indent=2))
    print(
        "Store the api_key now: only its hash is kept. webhook_secret verifies the key's "
        "webhooks (Standard Webhooks); `transcribe webhooks rotate-secret` replaces it.",
        file=sys.stderr,
    )
    return 0


def _policy(args: argparse.Namespace) -> str:
    """The validated policy spec of --redact/--redact-substitution/--redact-keep ('' for none)."""
    if args.redact is None:
        if args.redact_substitution or args.redact_keep or args.redact_audio:
            raise InvalidInput(
                "--redact-substitution, --redact-keep and --redact-audio need --redact"
            )
        return ""
    return Policy.parse(
        args.redact,
        substitution=args.redact_substitution or "entity",
        keep=args.redact_keep or "redacted",
        audio=args.redact_audio or "none",
    ).spec


def cmd_keys_redact(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        redact = _policy(args)
    except InvalidInput as exc:
        print(f"cannot set the policy: {exc.detail}", file=sys.stderr)
        return 2

    async def go(conn: asyncpg.Connection) -> bool:
        return await apikeys.set_redact(conn, args.key, redact)

    if asyncio.run(with_conn(settings, go)):
        print(json.dumps({"key": args.key, "redact": redact}))
        return 0
    print("no active key with that id or hint", file=sys.stderr)
    return 1


def _redact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redact",
        help="tenant default redaction, the floor of every job: pci, pii, none or classes "
        "(credit_card, cvv, expiry, ssn, email, phone, dob), comma-separated",
    )
    parser.add_argument("--redact-substitution", choices=["entity", "mask", "last4"])
    parser.add_argument(
        "--redact-keep",
        choices=["redacted", "both"],
        help="redacted (default): the original transcript is never stored; both: also kept, "
        "flagged, under .../transcriptions/unredacted/",
    )
    parser.add_argument(
        "--redact-audio",
        choices=["none", "beep", "silence"],
        help="also a redacted copy of the audio (<uuid>.redacted.wav); with --redact-keep "
        "redacted it replaces the original",
    )


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    keys = asyncio.run(with_conn(settings, apikeys.list_keys))
    print(json.dumps([_key_json(k) for k in keys], indent=2))
    return 0


def cmd_keys_roles(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    roles = None if args.roles == "default" else args.roles

    async def go(conn: asyncpg.Connection) -> bool:
        return await apikeys.set_channel_roles(conn, args.key, roles)

    try:
        found = asyncio.run(with_conn(settings, go))
    except apikeys.InvalidKeySettings as exc:
        print(f"cannot set the roles: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("no active key with that id or hint", file=sys.stderr)
        return 1
    shown = DEFAULT_CHANNEL_ROLES if roles is None else parse_roles(roles)
    print(json.dumps({"key": args.key, "channel_roles": list(shown)}))
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)

    async def go(conn: asyncpg.Connection) -> bool:
        return await apikeys.revoke(conn, args.key)

    if asyncio.run(with_conn(settings, go)):
        print("revoked")
        return 0
    print("no active key with that id or hint", file=sys.stderr)
    return 1


def cmd_keys_retention(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        audio_ttl = _ttl(args.audio_ttl, "audio_ttl")
        transcript_ttl = _ttl(args.transcript_ttl, "transcript_ttl")
    except InvalidInput as exc:
        print(f"cannot set the retention: {exc.detail}", file=sys.stderr)
        return 2

    async def go(conn: asyncpg.Connection) -> bool:
        return await apikeys.set_retention(
            conn, args.key, audio_ttl_seconds=audio_ttl, transcript_ttl_seconds=transcript_ttl
        )

    if asyncio.run(with_conn(settings, go)):
        print(
            json.dumps({"audio_ttl_seconds": audio_ttl, "transcript_ttl_seconds": transcript_ttl})
        )
        return 0
    print("no active key with that id or hint", file=sys.stderr)
    return 1


TTL_HELP = (
    "{what} this long after submission: 7d, 36h, 90m or seconds; 'none' keeps forever "
    "(default). Jobs may ask for less (form field {field}), never more"
)


def _ttl_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audio-ttl",
        help=TTL_HELP.format(what="remove a finished job's audio", field="audio_ttl"),
    )
    parser.add_argument(
        "--transcript-ttl",
        help=TTL_HELP.format(
            what="delete the whole job (transcripts, audio, personal data)",
            field="transcript_ttl",
        ),
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kp = sub.add_parser("keys", help="API keys")
    ksub = kp.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key (printed once)")
    kc.add_argument("--name", required=True)
    kc.add_argument(
        "--prefix",
        default="",
        help="tenant prefix this key writes under (and sub-prefixes); required unless --unscoped",
    )
    kc.add_argument(
        "--unscoped",
        action="store_true",
        help="operator key without a tenant prefix: may write under ANY b2_prefix, matches "
        "recordings by location, keeps the reference transcript layout; give it to no tenant",
    )
    kc.add_argument(
        "--webhook-url",
        help="default webhook endpoint; private networks refused unless in SSRF_ALLOWLIST",
    )
    kc.add_argument(
        "--webhook-secret", help="whsec_ signing secret; generated (and printed once) if not given"
    )
    kc.add_argument("--rate-limit", type=int, help="requests per minute")
    _ttl_options(kc)
    kc.add_argument(
        "--channel-roles",
        help="role of channel 0, 1, ... of this key's multichannel calls, e.g. customer,agent "
        "(default agent,customer); a job's channel_roles overrides it",
    )
    _redact_arguments(kc)
    kc.set_defaults(fn=cmd_keys_create)
    kd = ksub.add_parser(
        "redact", help="set a key's default redaction policy (jobs submitted from now on)"
    )
    kd.add_argument("key", help="key id or hint")
    _redact_arguments(kd)
    kd.set_defaults(fn=cmd_keys_redact)
    ksub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        fn=cmd_keys_list
    )
    ko = ksub.add_parser("roles", help="set the channel -> role map of a key's multichannel calls")
    ko.add_argument("key", help="key id or hint")
    ko.add_argument("roles", help="e.g. customer,agent (channel 0, 1, ...); 'default' clears it")
    ko.set_defaults(fn=cmd_keys_roles)
    kr = ksub.add_parser("revoke", help="revoke a key by id or hint")
    kr.add_argument("key")
    kr.set_defaults(fn=cmd_keys_revoke)
    kt = ksub.add_parser(
        "retention",
        help="set a key's TTLs (both options; an option left out clears that TTL); they apply "
        "to jobs submitted afterwards",
    )
    kt.add_argument("key", help="id or hint")
    _ttl_options(kt)
    kt.set_defaults(fn=cmd_keys_retention)
