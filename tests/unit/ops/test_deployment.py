"""compose/: no Docker engine runs in CI, so validate what can be validated here: the compose
file's structure and cross-references, the NATS config with the real nats-server, the
Dockerfile, the systemd units and Caddy snippet against the reference deployment, and the
Grafana dashboard against the metrics the code really exports."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedded.supervisor import find_binary
from services.cli import build_parser

COMPOSE = Path(__file__).resolve().parents[3] / "compose"
APP_SERVICES = ("init", "ingest", "transcriber", "notifier", "deadletters")
NATS_NODES = ("nats-1", "nats-2", "nats-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so anchors merge"
    return {k: str(v) for k, v in env.items()}


def test_compose_has_the_whole_system(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*NATS_NODES, "postgres", "s3", *APP_SERVICES):
        assert name in services, name
    assert services["transcriber"]["deploy"]["replicas"] >= 2


def test_compose_cross_references(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
        build = svc.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()


def test_compose_app_services_reach_every_nats_node_and_use_three_replicas(
    compose: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        env = _env(compose["services"][name])
        urls = env["NATS_URL"].split(",")
        assert sorted(u.split("//")[1].split(":")[0] for u in urls) == list(NATS_NODES)
        assert env["STREAM_REPLICAS"] == "3"
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BACKBLAZE_B2_S3_ENDPOINT"].endswith("s3:9000}")
    for node in NATS_NODES:
        assert _env(compose["services"][node])["SERVER_NAME"] == node


def test_compose_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in APP_SERVICES:
        args = parser.parse_args(compose["services"][name]["command"])
        assert callable(args.fn)


def test_nats_config_is_valid_for_every_node() -> None:
    binary = find_binary("nats-server")
    conf = COMPOSE / "nats-server.conf"
    for node in NATS_NODES:
        result = subprocess.run(
            [str(binary), "-t", "-c", str(conf)],
            env={**os.environ, "SERVER_NAME": node},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
    text = conf.read_text()
    assert all(f"nats-route://{n}:6222" in text for n in NATS_NODES)
    assert "jetstream" in text
    # Without its node name the config is rejected: the check above is a real check.
    env = {k: v for k, v in os.environ.items() if k != "SERVER_NAME"}
    bad = subprocess.run(
        [str(binary), "-t", "-c", str(conf)], env=env, capture_output=True, timeout=30
    )
    assert bad.returncode != 0


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (COMPOSE / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(":" in f and not f.endswith(":latest") for f in froms)
    repo = COMPOSE.parent
    for line in lines:
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (repo / src).exists(), f"COPY of missing {src}"
        assert not line.startswith("ADD "), "COPY, not ADD (no remote URLs)"
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert 'ENTRYPOINT ["transcribe"]' in lines


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((COMPOSE / "systemd" / name).read_text())
    return unit


@pytest.mark.parametrize(
    ("unit_name", "argv"),
    [
        ("transcribe-api.service", ["ingest"]),
        ("transcribe-worker.service", ["transcriber", "--scope", "gateway"]),
        ("transcribe-notifier.service", ["notifier"]),
        ("transcribe-deadletters.service", ["deadletters", "run"]),
        ("transcribe-insights.service", ["insights", "run"]),
    ],
)
def test_systemd_units_match_the_reference_deployment(unit_name: str, argv: list[str]) -> None:
    unit = _unit(unit_name)
    service = unit["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/.venv/bin/transcribe")
    assert exec_start[1:] == argv
    build_parser().parse_args(exec_start[1:])
    # As in the reference units: the same .env, restart always after 5 s, an unprivileged user.
    assert service["EnvironmentFile"] == "/opt/transcribe/transcription/.env"
    assert service["Restart"] == "always" and service["RestartSec"] == "5"
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network" in unit["Unit"]["After"]


def test_caddy_snippet_proxies_to_the_api_unit() -> None:
    caddy = (COMPOSE / "Caddyfile").read_text()
    assert "encode gzip" in caddy
    (upstream,) = re.findall(r"reverse_proxy\s+(\S+)", caddy)
    env = _unit("transcribe-api.service")["Service"]["Environment"]
    assert upstream == "{}:{}".format(
        *(dict(p.split("=") for p in env.split())[k] for k in ("INGEST_HOST", "INGEST_PORT"))
    )
    assert caddy.count("{") == caddy.count("}")


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    import prometheus_client

    import libs.metrics
    import libs.observability.metrics  # registers the ops gauges

    known: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        known.update(family.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum"))
    assert libs.metrics.JOBS_FINISHED is not None
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "transcribe.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btranscribe_[a-z_]+", e)}
    assert used, "the dashboard queries nothing"
    assert used <= known, f"unknown metrics: {sorted(used - known)}"
    # The list: jobs by state, consumer pending and redeliveries, outbox lag, engine
    # latency, webhook attempts by outcome.
    for metric in (
        "transcribe_jobs",
        "transcribe_consumer_pending",
        "transcribe_consumer_redelivered",
        "transcribe_outbox_lag_seconds",
        "transcribe_engine_seconds_bucket",
        "transcribe_webhook_attempts_total",
    ):
        assert metric in used, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_service_is_scraped_on_its_own_metrics_port(compose: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {"ingest", "transcriber", "notifier", "deadletters", "insights"} <= jobs
    for name in ("transcriber", "notifier", "deadletters", "insights"):
        env = _env(compose["services"][name])
        assert env["METRICS_PORT"] == "9102" and env["METRICS_HOST"] == "0.0.0.0"
    # One host under systemd: every unit its own port.
    ports = []
    units = ("worker", "notifier", "deadletters", "insights")
    for unit in units:
        env = _unit(f"transcribe-{unit}.service")["Service"]["Environment"]
        ports.append(dict(p.split("=") for p in env.split())["METRICS_PORT"])
    assert len(set(ports)) == len(units)
