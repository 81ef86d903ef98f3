from libs.settings.settings import EngineName, S3Settings, Settings, SettingsError, normalise_dsn

__all__ = ["EngineName", "S3Settings", "Settings", "SettingsError", "normalise_dsn"]
