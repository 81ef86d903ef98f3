from __future__ import annotations

import pytest

from libs.settings import Settings, SettingsError, normalise_dsn


def test_reference_env_is_accepted() -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+asyncpg://postgres:pw@localhost:5432/db?sslmode=disable",
            "BACKBLAZE_B2_S3_ENDPOINT": "https://s3.eu-central-003.backblazeb2.com",
            "BACKBLAZE_B2_BUCKET": "campaign-analysis",
            "BACKBLAZE_B2_KEY_ID": "kid",
            "BACKBLAZE_B2_APPLICATION_KEY": "secret",
            "API_KEY": "k",
            "OPENAI_API_KEY": "sk-x",
            "GOOGLE_API_KEY": "dummy-ok",
        }
    )
    assert s.database_url == "postgresql://postgres:pw@localhost:5432/db"
    assert s.s3 is not None and s.s3.region == "eu-central-003"
    assert s.engine == "openai"


def test_offline_engine_without_key() -> None:
    assert Settings.from_env({}).engine == "offline"


def test_openai_engine_needs_a_key() -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({"TRANSCRIBE_ENGINE": "openai"})


def test_incomplete_s3_settings_are_an_error() -> None:
    with pytest.raises(SettingsError, match="BACKBLAZE_B2_BUCKET"):
        Settings.from_env({"BACKBLAZE_B2_S3_ENDPOINT": "http://x"})


def test_bad_numbers_are_reported_by_name() -> None:
    with pytest.raises(SettingsError, match="INGEST_PORT"):
        Settings.from_env({"INGEST_PORT": "eighty"})


def test_dsn_keeps_other_query_parameters() -> None:
    assert (
        normalise_dsn("postgresql://h/db?sslmode=disable&application_name=x")
        == "postgresql://h/db?application_name=x"
    )


def test_configured_infrastructure_wins_over_embedded() -> None:
    s = Settings.from_env({"NATS_URL": "nats://a:4222"}).with_infrastructure(
        database_url="postgresql://embedded", nats_url="nats://embedded"
    )
    assert s.nats_url == "nats://a:4222"
    assert s.database_url == "postgresql://embedded"


def test_offline_engine_settings() -> None:
    defaults = Settings.from_env({})
    assert defaults.engine == "offline"
    assert defaults.offline_model is None and defaults.offline_model_sha256 is None
    assert defaults.offline_model_dir is None and defaults.offline_jobs == 1
    assert (defaults.offline_device, defaults.offline_compute_type) == ("auto", "auto")
    assert (defaults.offline_beam_size, defaults.offline_vad, defaults.offline_threads) == (
        1,
        True,
        0,
    )
    digest = "AB" * 32
    custom = Settings.from_env(
        {
            "TRANSCRIBE_ENGINE": "Faster-Whisper",
            "OFFLINE_MODEL": "/models/small.en",
            "OFFLINE_MODEL_SHA256": digest,
            "OFFLINE_DEVICE": "CUDA",
            "OFFLINE_COMPUTE_TYPE": "float16",
            "OFFLINE_BEAM_SIZE": "5",
            "OFFLINE_VAD": "no",
            "OFFLINE_THREADS": "4",
            "OFFLINE_JOBS": "2",
            "OFFLINE_MODEL_DIR": "/var/cache/models",
        }
    )
    # Both former names of the offline engine still select it.
    assert custom.engine == "offline"
    assert Settings.from_env({"TRANSCRIBE_ENGINE": "pocketsphinx"}).engine == "offline"
    assert custom.offline_model == "/models/small.en"
    assert custom.offline_jobs == 2 and str(custom.offline_model_dir) == "/var/cache/models"
    assert custom.offline_model_sha256 == digest.lower()
    assert (custom.offline_device, custom.offline_compute_type) == ("cuda", "float16")
    assert (custom.offline_beam_size, custom.offline_vad, custom.offline_threads) == (5, False, 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRANSCRIBE_ENGINE", "kaldi"),
        ("OFFLINE_DEVICE", "tpu"),
        ("OFFLINE_BEAM_SIZE", "0"),
        ("OFFLINE_THREADS", "-1"),
        ("OFFLINE_JOBS", "0"),
        ("OFFLINE_VAD", "maybe"),
        ("OFFLINE_MODEL_SHA256", "not-a-digest"),
    ],
)
def test_bad_offline_settings_are_reported_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_redaction_timeout() -> None:
    assert Settings.from_env({}).redaction_timeout == 60.0
    assert Settings.from_env({"REDACTION_TIMEOUT_SECONDS": "2.5"}).redaction_timeout == 2.5
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(SettingsError, match="REDACTION_TIMEOUT_SECONDS"):
            Settings.from_env({"REDACTION_TIMEOUT_SECONDS": bad})


def test_every_setting_is_one_row_of_the_table() -> None:
    """Each field but the object storage group is read through its `setting(...)`, and no two
    fields read the same variable."""
    from dataclasses import fields

    from libs.settings.settings import _table

    table = _table()
    assert {e.name for e in table} == {f.name for f in fields(Settings)} - {"s3"}
    assert len({e.env for e in table}) == len(table)


def test_blank_values_mean_the_default() -> None:
    assert Settings.from_env({"INGEST_PORT": "  ", "OFFLINE_VAD": ""}) == Settings.from_env({})


def test_checks_say_what_is_wrong() -> None:
    from libs.settings.settings import above, at_least

    assert at_least(1)(1) is None and at_least(1)(0) == "must be >= 1, got 0"
    assert above(0)(0.5) is None and above(0)(0) == "must be > 0, got 0"


def test_max_audio_seconds_defaults_to_eight_hours() -> None:
    assert Settings.from_env({}).max_audio_seconds == 28800
    assert Settings.from_env({"MAX_AUDIO_SECONDS": "3600"}).max_audio_seconds == 3600


@pytest.mark.parametrize("value", ["0", "-5", "nan", "eight hours"])
def test_a_bad_max_audio_seconds_is_reported_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="MAX_AUDIO_SECONDS"):
        Settings.from_env({"MAX_AUDIO_SECONDS": value})
