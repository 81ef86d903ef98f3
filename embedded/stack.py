"""The infrastructure of `transcribe up`: whatever is not configured, started on loopback.

No DATABASE_URL -> embedded Postgres, no NATS_URL -> nats-server, no BACKBLAZE_B2_S3_ENDPOINT ->
SeaweedFS; plus the demo samples server (the demo `public.recordings` rows point at it),
without WEBHOOK_URL a webhook inbox, and without SMTP_URL a mail sink (embedded/mailsink.py).
Data lives under TRANSCRIBE_HOME, so a second start reuses it. The services themselves are composed by the CLI (services/cli/up.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from importlib.resources import as_file
from pathlib import Path

import asyncpg

from embedded import demo as demo_servers
from embedded import demo_data as demo
from embedded.mailsink import mail_banner, mail_sink
from libs import apikeys
from libs.settings import S3Settings, Settings

BUCKET = "campaign-analysis"
# The web console's demo operator admin on the embedded stack (its password: credentials.json).
CONSOLE_DEMO_EMAIL = "admin@gateway.demo"


def credentials(home: Path) -> dict[str, str]:
    from embedded.ports import free_port

    """Generated once per home and reused, so keys printed on the first start keep working."""
    path = home / "credentials.json"
    if path.exists():
        creds: dict[str, str] = json.loads(path.read_text())
    else:
        creds = {}
    wanted: dict[str, Callable[[], str]] = {
        "api_key": apikeys.generate_key,
        "webhook_secret": apikeys.generate_webhook_secret,
        "s3_access_key": lambda: "tgw" + secrets.token_hex(8),
        "s3_secret_key": lambda: secrets.token_urlsafe(24),
        "samples_port": lambda: str(free_port()),
        "inbox_port": lambda: str(free_port()),
        "mail_port": lambda: str(free_port()),
        # The demo console admin's password (printed in the banner, like the API key).
        "console_password": lambda: secrets.token_urlsafe(15),
    }
    changed = False
    for name, make in wanted.items():
        if name not in creds:
            creds[name] = make()
            changed = True
    if changed:
        path.write_text(json.dumps(creds, indent=2))
        path.chmod(0o600)
    return creds


def _demo_port(creds: dict[str, str], name: str) -> int:
    from embedded.ports import is_port_free

    port = int(creds.get(name, "0"))
    return port if port and is_port_free(port) else 0


@dataclass(frozen=True)
class Infrastructure:
    """What `infrastructure()` started: the completed settings and the demo data's source."""

    settings: Settings
    samples_url: str
    # The bundled demo recording as a real file (for the upload example of the banner).
    sample: Path
    # Whether Postgres is ours (embedded): only then are the demo source tables seeded.
    embedded_database: bool
    # The demo console admin (an operator admin user) created on the embedded Postgres.
    console_password: str = ""

    async def seed_demo(self) -> None:
        """Create and fill the demo `public.recordings` tables, on the embedded Postgres only."""
        if not self.embedded_database:
            return
        conn = await asyncpg.connect(self.settings.require_database_url())
        try:
            await demo.seed(conn, self.samples_url)
        finally:
            await conn.close()

    async def seed_console_admin(self) -> str | None:
        """The demo console's operator admin (`CONSOLE_DEMO_EMAIL`), on the embedded Postgres
        only, created once with the password generated for this home; its e-mail, or None."""
        if not self.embedded_database or not self.console_password:
            return None
        from datetime import UTC, datetime

        from libs.users import accounts

        conn = await asyncpg.connect(self.settings.require_database_url())
        try:
            if await accounts.find(conn, CONSOLE_DEMO_EMAIL) is None:
                await accounts.create(
                    conn,
                    email=CONSOLE_DEMO_EMAIL,
                    password=self.console_password,
                    role="admin",
                    api_key_id=None,
                    operator=True,
                    now=datetime.now(UTC),
                )
        finally:
            await conn.close()
        return CONSOLE_DEMO_EMAIL


@asynccontextmanager
async def infrastructure(
    settings: Settings, creds: dict[str, str] | None = None
) -> AsyncIterator[Infrastructure]:
    """Start whatever `settings` does not configure, under `settings.home`; yield the settings
    completed with it (not yet provisioned); stop it all on exit.

    `creds` are those of `credentials(home)` (read or generated when not given).
    """
    from embedded.nats import NatsServer
    from embedded.postgres import PostgresServer
    from embedded.seaweed import SeaweedS3Server

    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if creds is None:
        creds = credentials(home)
    async with AsyncExitStack() as stack:
        database_url = settings.database_url
        embedded_pg = database_url is None
        if embedded_pg:
            pg = PostgresServer(home / "postgres")
            await pg.start()
            stack.push_async_callback(pg.stop)
            database_url = pg.dsn
        nats_url = settings.nats_url
        if nats_url is None:
            nats = NatsServer(home / "nats")
            await nats.start()
            stack.push_async_callback(nats.stop)
            nats_url = nats.url
        s3 = settings.s3
        if s3 is None:
            weed = SeaweedS3Server(
                home / "s3", access_key=creds["s3_access_key"], secret_key=creds["s3_secret_key"]
            )
            await weed.start()
            stack.push_async_callback(weed.stop)
            s3 = S3Settings(
                endpoint=weed.endpoint,
                bucket=BUCKET,
                access_key=weed.access_key,
                secret_key=weed.secret_key,
            )

        allow = [a for a in settings.ssrf_allowlist.split(",") if a.strip()]
        sample = stack.enter_context(as_file(demo_servers.SAMPLE_RECORDING))
        samples_url = await stack.enter_async_context(
            demo_servers.serve(demo_servers.samples_app(sample.parent))
        )
        allow.append(samples_url.split("://", 1)[1])
        webhook_url = settings.webhook_url
        # Every webhook is signed: without WEBHOOK_SECRET the bootstrap key signs with the
        # secret generated once for this home (credentials.json), printed in the banner.
        webhook_secret = settings.webhook_secret or creds["webhook_secret"]
        if webhook_url is None:
            inbox_url = await stack.enter_async_context(
                demo_servers.serve(
                    demo_servers.webhook_inbox_app(webhook_secret),
                    port=_demo_port(creds, "inbox_port"),
                )
            )
            webhook_url = inbox_url + "/"
            allow.append(inbox_url.split("://", 1)[1])

        # Without SMTP_URL, mail goes to a local sink that logs each message.
        settings = await stack.enter_async_context(
            mail_sink(settings, port=_demo_port(creds, "mail_port"))
        )

        settings = replace(
            settings.with_infrastructure(database_url=database_url, nats_url=nats_url, s3=s3),
            api_key=settings.api_key or creds["api_key"],
            ssrf_allowlist=",".join(allow),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
        yield Infrastructure(
            settings=settings,
            samples_url=samples_url,
            sample=sample,
            embedded_database=embedded_pg,
            console_password=creds["console_password"],
        )


def console_banner(settings: Settings, login: tuple[str, str] | None) -> str:
    """The banner's lines about the web console (`transcribe up`)."""
    base = settings.public_base_url
    if login is None:
        return f"  Web console: {base}/console/  (create a user: transcribe users create --help)\n"
    email, password = login
    return f"  Web console: {base}/console/   log in as {email} / {password}\n"


def banner(settings: Settings, sample: Path, console: tuple[str, str] | None = None) -> str:
    base = settings.public_base_url
    key = settings.api_key
    return f"""
Transcription gateway is up at {base}   (Ctrl-C stops everything)
  API key:   {key}
  Submit the bundled demo recording by id, exactly as reference clients do:
    curl -H "X-API-Key: {key}" -H "Content-Type: application/x-www-form-urlencoded" \\
         --data "recording_id={demo.DEMO_RECORDING_ID}&b2_prefix=gateway" {base}/api/media/transcribe
  ...or upload a file:
    curl -H "X-API-Key: {key}" -F file=@{sample} {base}/api/media/transcribe
  Poll:
    curl -H "X-API-Key: {key}" {base}/api/media/status/<audio_file_id>
  Webhooks go to {settings.webhook_url}, signed (Standard Webhooks) with
    {settings.webhook_secret}
  (WEBHOOK_SECRET when set; otherwise generated once for this TRANSCRIBE_HOME). Per-job
  callback_url deliveries and test events carry the same signature.
{mail_banner(settings)}{console_banner(settings, console)}"""
