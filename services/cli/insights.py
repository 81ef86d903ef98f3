"""`transcribe insights ...`: the LLM insight templates of a key (issue #21), a client of the
API like `transcribe search` (TRANSCRIBE_API_URL, TRANSCRIBE_API_KEY).

- `transcribe insights template get [--campaign C] [--key K]`: the template in force (JSON).
- `transcribe insights template set FILE|- [--campaign C] [--key K]`: store a template (JSON).
- `transcribe insights template delete [--campaign C] [--key K]`.
- `transcribe insights off KEY` / `transcribe insights on KEY`: operator only (the bootstrap
  key): nothing of KEY's calls reaches the chat model while off.
- `transcribe insights run`: the services/insights process (categories and chat model insights
  of every completed transcript; docs/insights.md), like `transcribe deadletters run`.

`--key` (id or hint) is for an operator acting on another key's templates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from libs.settings import Settings
from services.cli import client

PATH = "/api/insights/template"


def _params(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    if args.campaign is not None:
        out["campaign"] = args.campaign
    if args.key is not None:
        out["key"] = args.key
    return out


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    return Path(source).read_bytes()


def cmd_template(args: argparse.Namespace, settings: Settings) -> int:
    body: bytes | None = None
    if args.action == "set":
        if args.file is None:
            print("usage: transcribe insights template set FILE|- [--campaign C]", file=sys.stderr)
            return 2
        try:
            body = _read(args.file)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.file is not None:
        print(f"template {args.action} takes no file", file=sys.stderr)
        return 2

    async def go(gw: client.Gateway) -> int:
        params = _params(args)
        answer: Any
        if args.action == "get":
            answer = await gw.call("GET", PATH, params=params)
        elif args.action == "set":
            headers = {"Content-Type": "application/json"}
            answer = await gw.call("PUT", PATH, params=params, data=body, headers=headers)
        else:
            answer = await gw.call("DELETE", PATH, params=params)
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0

    return client.run_against_gateway(go, args, settings)


def cmd_switch(args: argparse.Namespace, settings: Settings) -> int:
    enabled = "true" if args.command_name == "on" else "false"

    async def go(gw: client.Gateway) -> int:
        answer = await gw.call(
            "PUT", "/api/insights/enabled", params={"key": args.target, "enabled": enabled}
        )
        print(json.dumps(answer))
        return 0

    return client.run_against_gateway(go, args, settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from services.cli.common import run_service
    from services.insights.main import run

    return run_service(run, settings)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "insights",
        help="the insights service (run); LLM insight templates of a key; turn insights "
        "off/on for a key (operator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    isub = p.add_subparsers(dest="insights_command", required=True)
    isub.add_parser(
        "run", help="run the insights service (categories, chat model insights)"
    ).set_defaults(fn=cmd_run)
    t = isub.add_parser("template", help="get, set or delete the key's (campaign's) template")
    t.add_argument("action", choices=["get", "set", "delete"])
    t.add_argument("file", nargs="?", help="set: the template as a JSON file, - for stdin")
    t.add_argument("--campaign", help="the campaign's template (default: the key's own)")
    t.add_argument("--key", help="operator: another key (id or hint)")
    client.target_options(t)
    t.set_defaults(fn=cmd_template)
    for name, doc in (("off", "turn LLM insights off for a key"), ("on", "turn them back on")):
        s = isub.add_parser(name, help=f"operator: {doc}")
        s.add_argument("target", metavar="KEY", help="the key (id or hint)")
        client.target_options(s)
        s.set_defaults(fn=cmd_switch, command_name=name)
