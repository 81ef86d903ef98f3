"""`transcribe`: the one command line of the project."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from libs import apikeys
from libs.db import migrate
from libs.logs import configure
from libs.settings import Settings, SettingsError


def _run_service(
    runner: Callable[[Settings, asyncio.Event], Awaitable[None]], settings: Settings
) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(settings, stop)

    asyncio.run(main())
    return 0


async def _with_conn(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(settings.require_database_url())
    try:
        return await fn(conn)
    finally:
        await conn.close()


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack import up

    return up.main(settings)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from services.ingest.main import run

    return _run_service(run, settings)


def cmd_transcriber(args: argparse.Namespace, settings: Settings) -> int:
    from services.transcriber.main import run

    scope: str | None = args.scope

    async def scoped(s: Settings, stop: asyncio.Event) -> None:
        await run(s, stop, scope=scope)

    return _run_service(scoped, settings)


def cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    from services.notifier.main import run

    return _run_service(run, settings)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.provision import provision

    asyncio.run(provision(settings))
    print("provisioned: schema, bootstrap key, bucket, stream and consumers")
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> list[migrate.Migration]:
        return await migrate.migrate(conn)

    applied = asyncio.run(_with_conn(settings, go))
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print("schema is up to date")
    return 0


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
        "created_at": key.created_at.isoformat(),
        "revoked": key.revoked_at is not None,
    }


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    secret = args.webhook_secret
    if args.webhook_url and not secret:
        secret = apikeys.generate_webhook_secret()

    async def go(conn: asyncpg.Connection) -> tuple[str, apikeys.ApiKey]:
        return await apikeys.create(
            conn,
            name=args.name,
            tenant_prefix=args.prefix,
            webhook_url=args.webhook_url,
            webhook_secret=secret,
            rate_limit_per_minute=args.rate_limit,
        )

    raw, key = asyncio.run(_with_conn(settings, go))
    out = _key_json(key) | {"api_key": raw}
    if secret:
        out["webhook_secret"] = secret
    print(json.dumps(out, indent=2))
    print("Store the api_key now: only its hash is kept.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = asyncio.run(_with_conn(settings, apikeys.list_keys))
    print(json.dumps([_key_json(k) for k in keys], indent=2))
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def go(conn: asyncpg.Connection) -> bool:
        return await apikeys.revoke(conn, args.key)

    if asyncio.run(_with_conn(settings, go)):
        print("revoked")
        return 0
    print("no active key with that id or hint", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transcribe", description=__doc__)
    parser.add_argument("--log-format", choices=["json", "console"], default="json")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="run everything on the embedded default stack").set_defaults(
        fn=cmd_up
    )
    sub.add_parser(
        "ingest", help="run the HTTP API against configured infrastructure"
    ).set_defaults(fn=cmd_ingest)
    t = sub.add_parser("transcriber", help="run a transcriber worker")
    t.add_argument("--scope", help="only jobs of this tenant prefix (like --b2-prefix gateway/)")
    t.set_defaults(fn=cmd_transcriber)
    sub.add_parser("notifier", help="run the webhook notifier").set_defaults(fn=cmd_notifier)
    sub.add_parser("init", help="migrate, create bucket, stream and consumers").set_defaults(
        fn=cmd_init
    )

    dbp = sub.add_parser("db", help="database administration")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("migrate", help="apply pending migrations").set_defaults(fn=cmd_db_migrate)

    kp = sub.add_parser("keys", help="API keys")
    ksub = kp.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key (printed once)")
    kc.add_argument("--name", required=True)
    kc.add_argument("--prefix", default="", help="tenant prefix this key writes under")
    kc.add_argument("--webhook-url")
    kc.add_argument("--webhook-secret", help="whsec_ secret; generated when a webhook URL is given")
    kc.add_argument("--rate-limit", type=int, help="requests per minute")
    kc.set_defaults(fn=cmd_keys_create)
    ksub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        fn=cmd_keys_list
    )
    kr = ksub.add_parser("revoke", help="revoke a key by id or hint")
    kr.add_argument("key")
    kr.set_defaults(fn=cmd_keys_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(json=args.log_format == "json")
    try:
        settings = Settings.from_env()
        result: int = args.fn(args, settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
