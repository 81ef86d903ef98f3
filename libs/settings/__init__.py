from libs.settings.settings import EngineName, S3Settings, Settings, SettingsError, normalise_dsn
from libs.settings.smtp import Sender, SmtpServer

__all__ = [
    "EngineName",
    "S3Settings",
    "Sender",
    "Settings",
    "SettingsError",
    "SmtpServer",
    "normalise_dsn",
]
