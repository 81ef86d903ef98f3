"""`transcribe up`: the whole system in the foreground on an embedded default stack.

Starts only the infrastructure that is not configured (no DATABASE_URL -> embedded Postgres,
no NATS_URL -> nats-server, no BACKBLAZE_B2_S3_ENDPOINT -> SeaweedFS), provisions it, runs
ingest + transcriber + notifier, and stops everything it started on SIGINT/SIGTERM. Data lives
under TRANSCRIBE_HOME, so a second start reuses it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import asyncpg
import structlog

from embedded import demo as demo_servers
from embedded import demo_data as demo
from libs import apikeys
from libs.provision import provision
from libs.settings import S3Settings, Settings
from services.deadletters import main as deadletters_main
from services.ingest import main as ingest_main
from services.notifier import main as notifier_main
from services.transcriber import main as transcriber_main

log = structlog.get_logger()

BUCKET = "campaign-analysis"


def _credentials(home: Path) -> dict[str, str]:
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


async def run_stack(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Settings], None] | None = None,
) -> None:
    from embedded.supervisor import NatsServer, PostgresServer, SeaweedS3Server

    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    creds = _credentials(home)
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
        samples_url = await stack.enter_async_context(
            demo_servers.serve(demo_servers.samples_app())
        )
        allow.append(samples_url.split("://", 1)[1])
        webhook_url = settings.webhook_url
        webhook_secret = settings.webhook_secret
        if webhook_url is None:
            webhook_secret = webhook_secret or creds["webhook_secret"]
            inbox_url = await stack.enter_async_context(
                demo_servers.serve(
                    demo_servers.webhook_inbox_app(webhook_secret),
                    port=_demo_port(creds, "inbox_port"),
                )
            )
            webhook_url = inbox_url + "/"
            allow.append(inbox_url.split("://", 1)[1])

        settings = replace(
            settings.with_infrastructure(database_url=database_url, nats_url=nats_url, s3=s3),
            api_key=settings.api_key or creds["api_key"],
            ssrf_allowlist=",".join(allow),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
        await provision(settings)
        if embedded_pg:
            conn = await asyncpg.connect(settings.require_database_url())
            try:
                await demo.seed(conn, samples_url)
            finally:
                await conn.close()

        # One process: ingest's /metrics shows every service's metrics, so none opens its own.
        one = replace(settings, metrics_port=0)
        services = [
            asyncio.create_task(ingest_main.run(one, stop), name="ingest"),
            asyncio.create_task(transcriber_main.run(one, stop), name="transcriber"),
            asyncio.create_task(notifier_main.run(one, stop), name="notifier"),
            # Dead-letter capture plus the ops gauges.
            asyncio.create_task(deadletters_main.run(one, stop), name="deadletters"),
        ]
        if on_ready is not None and await _wait_ready(settings, services):
            on_ready(settings)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*services, stopper], return_when="FIRST_COMPLETED")
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("service_crashed", service=task.get_name(), error=repr(task.exception()))
        stop.set()
        results = await asyncio.gather(*services, return_exceptions=True)
        for task, result in zip(services, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("service_stopped_with_error", service=task.get_name(), error=repr(result))
        stopper.cancel()
    log.info("stack_stopped")


async def _wait_ready(
    settings: Settings, services: list[asyncio.Task[None]], deadline: float = 60.0
) -> bool:
    """Poll /readyz until the API answers 200, or a service dies, or the deadline passes."""
    import aiohttp

    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    url = f"http://{settings.ingest_host}:{settings.ingest_port}/readyz"
    async with aiohttp.ClientSession() as session:
        while loop.time() < until and not any(t.done() for t in services):
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    return False


def banner(settings: Settings) -> str:
    base = settings.public_base_url
    key = settings.api_key
    sample = Path(__file__).resolve().parent / "data" / "hello_campaign.wav"
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
  Webhooks go to {settings.webhook_url} (signed with WEBHOOK_SECRET).
"""


def main(settings: Settings) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(s: Settings) -> None:
            print(banner(s), file=sys.stderr, flush=True)

        await run_stack(settings, stop, on_ready=ready)

    import uvloop

    # The same loop as the separately run services (see services.cli.common.run_service).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
        loop_runner.run(runner())
    return 0
