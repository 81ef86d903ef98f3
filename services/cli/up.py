"""`transcribe up`: the whole system in the foreground on an embedded default stack.

Starts only the infrastructure that is not configured (embedded.stack), provisions it, runs
ingest + transcriber + notifier + dead-letter capture + insights in this one process, and stops
everything it started on SIGINT/SIGTERM. Data lives under TRANSCRIBE_HOME, so a second start
reuses it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from embedded.stack import banner, credentials, infrastructure
from libs.provision import provision
from libs.settings import Settings
from services.deadletters import main as deadletters_main
from services.ingest import main as ingest_main
from services.insights import main as insights_main
from services.notifier import main as notifier_main
from services.transcriber import main as transcriber_main

log = structlog.get_logger()


async def run_stack(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Settings, Path, tuple[str, str] | None], None] | None = None,
) -> None:
    """Run everything until `stop` is set; `on_ready(settings, sample, console login)` once
    the API is ready."""
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    creds = credentials(home)
    async with infrastructure(settings, creds) as infra:
        settings = infra.settings
        await provision(settings)
        await infra.seed_demo()
        console_email = await infra.seed_console_admin()
        console = None if console_email is None else (console_email, infra.console_password)

        # One process: ingest's /metrics shows every service's metrics, so none opens its own.
        one = replace(settings, metrics_port=0)
        services = [
            asyncio.create_task(ingest_main.run(one, stop), name="ingest"),
            asyncio.create_task(transcriber_main.run(one, stop), name="transcriber"),
            asyncio.create_task(notifier_main.run(one, stop), name="notifier"),
            # Dead-letter capture plus the ops gauges.
            asyncio.create_task(deadletters_main.run(one, stop), name="deadletters"),
            # Categories and chat model insights of completed transcripts (issue 21).
            asyncio.create_task(insights_main.run(one, stop), name="insights"),
        ]
        if on_ready is not None and await _wait_ready(settings, services):
            on_ready(settings, infra.sample, console)
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


def main(settings: Settings) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(s: Settings, sample: Path, console: tuple[str, str] | None) -> None:
            print(banner(s, sample, console), file=sys.stderr, flush=True)

        await run_stack(settings, stop, on_ready=ready)

    import uvloop

    # The same loop as the separately run services (see services.cli.common.run_service).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
        loop_runner.run(runner())
    return 0
