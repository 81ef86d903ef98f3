"""In-process stand-ins for external services the gateway talks to (no internet in CI)."""
