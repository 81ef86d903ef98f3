"""Running services: `up`, `ingest`, `transcriber`, `notifier`, `init` (`insights run` and
`deadletters run` are with their other commands)."""

from __future__ import annotations

import argparse
import asyncio

from libs.settings import Settings
from services.cli.common import run_service, with_conn


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from services.cli import up

    return up.main(settings)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from services.ingest.main import run

    return run_service(run, settings)


def cmd_transcriber(args: argparse.Namespace, settings: Settings) -> int:
    from services.transcriber.main import run

    scope: str | None = args.scope

    async def scoped(s: Settings, stop: asyncio.Event) -> None:
        await run(s, stop, scope=scope)

    return run_service(scoped, settings)


def cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    from services.notifier.main import run

    return run_service(run, settings)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from libs.provision import provision

    asyncio.run(provision(settings))
    print("provisioned: schema, bootstrap key, bucket, stream and consumers")
    if settings.api_key and not settings.webhook_secret:
        # Every webhook is signed: the bootstrap key got a secret of its own, kept across runs.
        from libs import apikeys

        raw = settings.api_key
        secret = asyncio.run(with_conn(settings, lambda c: apikeys.bootstrap_secret(c, raw)))
        print(
            f"bootstrap key webhook secret (generated; set WEBHOOK_SECRET to choose one): {secret}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
