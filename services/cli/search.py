"""`transcribe search ...`: search across calls (issue #20).

- `transcribe search "cancel my subscription" --role customer --since 7d [--all]`: a client of
  `GET /api/media/search` (like `transcribe jobs list`: HTTP only, TRANSCRIBE_API_URL and
  TRANSCRIBE_API_KEY); one JSON line per call, the first page unless --all.
- `transcribe search reindex [--full] [--batch N]`: index the completed jobs the index does not
  hold (those completed before it existed) from their stored JSON transcripts (operator: the
  database and object storage). Batched and resumable (run it again: it goes on with what is
  left); safe while the system runs (a job completed, rerun or deleted meanwhile is left to its
  own transaction). `--full` re-indexes every completed job (after `search config`).
- `transcribe search config KEY [CONFIG | --clear]`: the text search configuration a key's calls
  are indexed with from now on (default: by the job's language).

To search for the words "reindex" or "config" themselves, give them with `--q`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

from libs import db, params, search
from libs.apikeys import endpoints
from libs.blobstore import BlobStoreUnavailable, S3BlobStore
from libs.db import DatabaseUnavailable
from libs.errors import InvalidInput
from libs.search import configs, query
from libs.settings import Settings
from services.cli import client
from services.cli.replay import with_embedded_stack

MAINTENANCE = ("reindex", "config")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def search_params(args: argparse.Namespace) -> dict[str, str]:
    """The query string of GET /api/media/search from the options."""
    text = args.q if args.q is not None else " ".join(args.words)
    out = {"q": text} if text.strip() else {}
    for name in ("role", "campaign", "category", "outcome", "limit"):
        value = getattr(args, name)
        if value is not None:
            out[name] = str(value)
    for name in ("since", "until"):
        value = getattr(args, name)
        if value:
            out[name] = params.parse_since(value, name).isoformat()
    for name in query.RANGES:
        for side in ("min", "max"):
            value = getattr(args, f"{side}_{name}")
            if value is not None:
                out[f"{side}_{name}"] = value
    return out


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    if args.q is None and args.words and args.words[0] in MAINTENANCE:
        if args.words[0] == "reindex" and len(args.words) == 1:
            return cmd_reindex(args, settings)
        if args.words[0] == "config" and len(args.words) in (2, 3):
            return cmd_config(args, settings)
        print(
            "usage: transcribe search reindex [--full] | search config KEY [CONFIG | --clear]",
            file=sys.stderr,
        )
        return 2
    try:
        query_string = search_params(args)
    except InvalidInput as exc:
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
        return 2

    async def go(gw: client.Gateway) -> int:
        cursor: str | None = None
        while True:
            page = await gw.call(
                "GET",
                "/api/media/search",
                params=query_string | ({"cursor": cursor} if cursor else {}),
            )
            for hit in page["hits"]:
                print(json.dumps(hit, ensure_ascii=False))
            cursor = page["next_cursor"]
            if cursor is None or not args.all:
                if cursor is not None:
                    print(f"more: --all, or the next page with cursor {cursor}", file=sys.stderr)
                return 0

    return client.run_against_gateway(go, args, settings)


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)

    async def go() -> dict[str, Any]:
        pool = await db.create_pool(settings.require_database_url(), max_size=2)
        indexed = skipped = 0
        after = uuid.UUID(int=0)
        try:
            async with S3BlobStore.open(settings.require_s3()) as store:
                while True:
                    batch = await search.reindex_batch(
                        pool, store.get_bytes, after=after, limit=args.batch, full=args.full
                    )
                    if batch.last_id is None:
                        break
                    after = batch.last_id
                    indexed += batch.indexed
                    skipped += batch.skipped
                    print(json.dumps({"indexed": indexed, "skipped": skipped, "after": str(after)}))
        finally:
            await pool.close()
        return {"indexed": indexed, "skipped": skipped}

    try:
        done = asyncio.run(go())
    except (BlobStoreUnavailable, DatabaseUnavailable) as exc:
        print(f"error: {exc}; run it again to go on where it stopped", file=sys.stderr)
        return 1
    print(json.dumps({"done": done}))
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    _, key_ref, *rest = args.words
    config = None if args.clear or not rest else rest[0]
    if config is None and not args.clear:
        print("give a configuration (e.g. english, simple) or --clear", file=sys.stderr)
        return 2
    try:
        if config is not None:
            config = configs.check(config)
    except InvalidInput as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2

    async def go() -> bool:
        conn = await db.connect(settings.require_database_url())
        try:
            found = await endpoints.find_key(conn, key_ref)
            if len(found) != 1:
                return False
            await configs.set_for_key(conn, found[0], config)
            return True
        finally:
            await conn.close()

    if not asyncio.run(go()):
        print(f"no single active key with id or hint {key_ref!r}", file=sys.stderr)
        return 1
    print(json.dumps({"key": key_ref, "config": config or "by language"}))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "search",
        help="calls in which something was said (JSON lines); `search reindex`, `search config`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "words", nargs="*", help='what was said (web-search syntax: "a phrase", -not, OR)'
    )
    p.add_argument("--q", help="the query, when it is 'reindex' or 'config' itself")
    p.add_argument("--role", help="agent, customer, a speaker label or any")
    p.add_argument("--campaign", help="exact campaign name")
    p.add_argument("--category", help="calls that matched this category (docs/insights.md)")
    p.add_argument("--outcome", help="calls whose insights chose this outcome")
    p.add_argument("--since", help="created at or after: ISO 8601 or an age like 7d, 2h")
    p.add_argument("--until", help="created before: ISO 8601 or an age")
    for name in query.RANGES:
        for side in ("min", "max"):
            p.add_argument(f"--{side}-{_flag(name)}", dest=f"{side}_{name}", metavar="N")
    p.add_argument("--limit", type=int, help=f"calls per page (1-{query.MAX_LIMIT})")
    p.add_argument("--all", action="store_true", help="every page, not just the first")
    p.add_argument("--full", action="store_true", help="reindex: every completed job")
    p.add_argument("--batch", type=int, default=100, help="reindex: jobs per batch")
    p.add_argument("--clear", action="store_true", help="config: back to the job's language")
    client.target_options(p)
    p.set_defaults(fn=cmd_search)
