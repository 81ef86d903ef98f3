"""`transcribe`: the one command line of the project. Each area registers its subcommands."""

from __future__ import annotations

import argparse
import sys

from libs.logs import configure
from libs.settings import Settings, SettingsError
from services.cli import client, db, deadletters, jobs, keys, replay, run, search, users, webhooks

MODULES = (run, db, keys, webhooks, replay, jobs, deadletters, client, search, users)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transcribe", description=__doc__)
    parser.add_argument("--log-format", choices=["json", "console"], default="json")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
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
