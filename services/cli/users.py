"""`transcribe users ...`: web console users, straight in the database (like `transcribe
keys`): create, list, disable, enable, reset-password.

A password comes from standard input with --password-stdin (one line, for scripts); otherwise
it is asked for (getpass) when a terminal is attached, and generated and printed once when not
(or when the answer is empty). Disabling a user or setting a new password ends their
sessions."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from libs import apikeys
from libs.errors import DomainError
from libs.settings import Settings
from libs.users import accounts, passwords
from libs.users.roles import ROLES
from services.cli.common import text, with_conn
from services.cli.replay import with_embedded_stack


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(the password, whether it was generated)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("Password (empty: generate one): ")
        if first:
            if getpass.getpass("Again: ") != first:
                raise DomainError("the two passwords differ")
            return first, False
    return passwords.generate(), True


def _user_json(user: accounts.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "operator": user.operator,
        "key_id": user.key_id,
        "key_hint": user.key_hint,
        "tenant": user.tenant,
        "disabled": user.disabled,
        "created_at": user.created_at,
    }


def _fail(what: str, exc: DomainError) -> int:
    print(f"cannot {what}: {exc.detail}", file=sys.stderr)
    return 2


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        password, generated = _password(args)
    except DomainError as exc:
        return _fail("create the user", exc)

    async def go(conn: asyncpg.Connection) -> accounts.User | None:
        owner: uuid.UUID | None = None
        if args.key is not None:
            key = await apikeys.find(conn, args.key)
            if key is None:
                return None
            owner = uuid.UUID(key.id)
        return await accounts.create(
            conn,
            email=args.email,
            password=password,
            role=args.role,
            api_key_id=owner,
            operator=args.operator,
            now=datetime.now(UTC),
        )

    try:
        user = asyncio.run(with_conn(settings, go))
    except DomainError as exc:
        return _fail("create the user", exc)
    if user is None:
        print("no active key with that id or hint (one key per hint)", file=sys.stderr)
        return 1
    out = _user_json(user)
    if generated:
        out["password"] = password
    print(json.dumps(out, indent=2))
    if generated:
        print("Store the password now: only its hash is kept.", file=sys.stderr)
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)

    async def go(conn: asyncpg.Connection) -> list[accounts.User]:
        return await accounts.list_users(conn, None)

    print(json.dumps([_user_json(u) for u in asyncio.run(with_conn(settings, go))], indent=2))
    return 0


def _change(args: argparse.Namespace, settings: Settings, *, disabled: bool) -> int:
    settings = with_embedded_stack(settings)

    async def go(conn: asyncpg.Connection) -> accounts.User | None:
        user = await accounts.find(conn, args.user)
        if user is None:
            return None
        await accounts.update(conn, uuid.UUID(user.id), disabled=disabled, now=datetime.now(UTC))
        return await accounts.get(conn, uuid.UUID(user.id))

    user = asyncio.run(with_conn(settings, go))
    if user is None:
        print("no user with that id or e-mail", file=sys.stderr)
        return 1
    print(json.dumps(_user_json(user), indent=2))
    return 0


def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    return _change(args, settings, disabled=True)


def cmd_users_enable(args: argparse.Namespace, settings: Settings) -> int:
    return _change(args, settings, disabled=False)


def cmd_users_reset_password(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        password, generated = _password(args)
    except DomainError as exc:
        return _fail("set the password", exc)

    async def go(conn: asyncpg.Connection) -> accounts.User | None:
        user = await accounts.find(conn, args.user)
        if user is not None:
            await accounts.set_password(conn, uuid.UUID(user.id), password, now=datetime.now(UTC))
        return user

    try:
        user = asyncio.run(with_conn(settings, go))
    except DomainError as exc:
        return _fail("set the password", exc)
    if user is None:
        print("no user with that id or e-mail", file=sys.stderr)
        return 1
    out: dict[str, Any] = {"id": user.id, "email": user.email, "sessions_ended": True}
    if generated:
        out["password"] = password
    print(json.dumps(out, indent=2))
    return 0


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (one line); without it a terminal is "
        "asked, else one is generated and printed once",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("users", help="web console users")
    usub = up.add_subparsers(dest="users_command", required=True)
    uc = usub.add_parser("create", help="create a console user")
    uc.add_argument("--email", required=True, type=text)
    uc.add_argument("--role", required=True, choices=ROLES)
    owner = uc.add_mutually_exclusive_group(required=True)
    owner.add_argument(
        "--key", type=text, help="the API key (id or hint) whose tenant the user works in"
    )
    owner.add_argument(
        "--operator", action="store_true", help="an operator user: every tenant (acts as API_KEY)"
    )
    _password_option(uc)
    uc.set_defaults(fn=cmd_users_create)
    usub.add_parser("list", help="list console users").set_defaults(fn=cmd_users_list)
    ud = usub.add_parser("disable", help="disable a user (ends their sessions)")
    ud.add_argument("user", type=text, help="id or e-mail")
    ud.set_defaults(fn=cmd_users_disable)
    ue = usub.add_parser("enable", help="enable a disabled user")
    ue.add_argument("user", type=text, help="id or e-mail")
    ue.set_defaults(fn=cmd_users_enable)
    ur = usub.add_parser("reset-password", help="set a new password (ends their sessions)")
    ur.add_argument("user", type=text, help="id or e-mail")
    _password_option(ur)
    ur.set_defaults(fn=cmd_users_reset_password)
