"""`transcribe categories ...`: a key's categories (issue #21), a client of the gateway's
`/api/categories` routes (HTTP only, like `transcribe search`: TRANSCRIBE_API_URL and
TRANSCRIBE_API_KEY; `--key ID` names another key with the operator's key).

- `transcribe categories set NAME --rule FILE` (`--rule -`: standard input): create or
  replace a category; the file holds the rule's JSON (docs/categories.md);
- `transcribe categories list` / `get NAME` / `delete NAME`;
- `transcribe categories apply NAME --since 30d`: evaluate it again on the key's completed
  calls since then (an age or an ISO 8601 time), without transcribing them; goes on request
  after request until every call was seen, a JSON line of counts per request, then the totals.

Answers are JSON on stdout; exit codes: 0 done, 1 the gateway refused, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from libs import params
from libs.errors import InvalidInput
from libs.settings import Settings
from services.cli import client
from services.cli.common import text

ACTIONS = ("set", "list", "get", "delete", "apply")


def _path(name: str, tail: str = "") -> str:
    return f"/api/categories/{quote(name, safe='')}{tail}"


def _scope(args: argparse.Namespace) -> dict[str, str]:
    return {"key": args.key} if args.key else {}


def _read_rule(source: str) -> Any:
    """The rule's JSON from a file, or standard input for `-`."""
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    return json.loads(raw)


def _usage(message: str) -> int:
    print(f"error: usage: {message}", file=sys.stderr)
    return 2


def cmd_categories(args: argparse.Namespace, settings: Settings) -> int:
    needs_name = args.action in ("set", "get", "delete", "apply")
    if needs_name != (args.name is not None):
        what = "NAME" if needs_name else "no NAME"
        return _usage(f"transcribe categories {args.action} takes {what}")
    rule: Any = None
    if args.action == "set":
        if args.rule is None:
            return _usage("transcribe categories set NAME --rule FILE|-")
        try:
            rule = _read_rule(args.rule)
        except OSError as exc:
            print(f"error: cannot read {args.rule}: {exc.strerror}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"error: {args.rule} is not JSON: {exc}", file=sys.stderr)
            return 2
        except RecursionError:
            print(f"error: {args.rule} nests too deep to be a rule", file=sys.stderr)
            return 2
    since: str | None = None
    if args.action == "apply":
        try:
            since = params.parse_since(args.since).isoformat()
        except InvalidInput as exc:
            print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
            return 2

    async def go(gw: client.Gateway) -> int:
        scope = _scope(args)
        match args.action:
            case "list":
                answer = await gw.call("GET", "/api/categories", params=scope)
            case "get":
                answer = await gw.call("GET", _path(args.name), params=scope)
            case "set":
                answer = await gw.call("PUT", _path(args.name), params=scope, json={"rule": rule})
            case "delete":
                answer = await gw.call("DELETE", _path(args.name), params=scope)
            case _:
                assert since is not None
                answer = await _apply(gw, args.name, scope | {"since": since})
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0

    return client.run_against_gateway(go, args, settings)


async def _apply(gw: client.Gateway, name: str, query: dict[str, str]) -> dict[str, Any]:
    totals = {"name": name, "since": query["since"], "evaluated": 0, "matched": 0, "skipped": 0}
    cursor: str | None = None
    while True:
        page = await gw.call(
            "POST", _path(name, "/apply"), params=query | ({"cursor": cursor} if cursor else {})
        )
        for field in ("evaluated", "matched", "skipped"):
            totals[field] += page[field]
        cursor = page["next_cursor"]
        if cursor is None:
            return totals
        print(json.dumps(page), file=sys.stderr)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "categories",
        help="a key's categories: set NAME --rule FILE | list | get NAME | delete NAME | "
        "apply NAME --since 30d",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("name", nargs="?", type=text, help="the category")
    p.add_argument("--rule", metavar="FILE", help="set: the rule's JSON file, - for stdin")
    p.add_argument(
        "--since", default="30d", help="apply: calls created since (an age like 30d, or ISO 8601)"
    )
    p.add_argument("--key", type=text, help="another key's id (with the operator's key)")
    client.target_options(p)
    p.set_defaults(fn=cmd_categories)
