"""Which PostgreSQL text search configuration a call is indexed (and queried) with.

The job's language picks it (`english` by default, `simple` where PostgreSQL has no stemming
dictionary for the language); a key may override it for all of its calls
(`search_key_configs`, `transcribe search config`). Only the built-in configurations are
accepted, so a configuration name never reaches the parser unchecked.
"""

from __future__ import annotations

import uuid

import asyncpg

from libs.errors import InvalidInput

DEFAULT = "english"
FALLBACK = "simple"
# The configurations PostgreSQL 15 ships, by the ISO 639-1 code and the English name Whisper
# reports (e.g. "en" or "english").
_BY_CODE: dict[str, str] = {
    "ar": "arabic",
    "hy": "armenian",
    "eu": "basque",
    "ca": "catalan",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "el": "greek",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "ga": "irish",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "no": "norwegian",
    "nb": "norwegian",
    "nn": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "es": "spanish",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}
BUILT_IN: frozenset[str] = frozenset(_BY_CODE.values()) | {FALLBACK}

SET_KEY_CONFIG = """
INSERT INTO media_pipeline.search_key_configs (api_key_id, config) VALUES ($1, $2::regconfig)
ON CONFLICT (api_key_id) DO UPDATE SET config = EXCLUDED.config
"""
CLEAR_KEY_CONFIG = "DELETE FROM media_pipeline.search_key_configs WHERE api_key_id = $1"
# Every configuration an indexed call uses (a handful): the query is parsed with each.
CONFIGS_IN_USE = "SELECT config::text FROM media_pipeline.search_configs ORDER BY 1"


def for_language(language: str | None) -> str:
    """`en`, `en-US`, `English` -> english; no language -> english; a language PostgreSQL has
    no dictionary for -> simple (words as written, lower-cased, no stemming)."""
    if not language or not language.strip():
        return DEFAULT
    word = language.strip().lower().replace("_", "-")
    if word in BUILT_IN:
        return word
    return _BY_CODE.get(word.split("-", 1)[0], FALLBACK)


def check(config: str) -> str:
    """A built-in configuration name (lower-cased), else InvalidInput."""
    name = config.strip().lower()
    if name not in BUILT_IN:
        raise InvalidInput(
            f"config must be one of {', '.join(sorted(BUILT_IN))}", code="invalid_config"
        )
    return name


async def set_for_key(
    conn: asyncpg.Connection | asyncpg.Pool, api_key_id: uuid.UUID, config: str | None
) -> None:
    """Index the key's calls completed from now on with `config` (None: by their language).
    Calls already indexed keep theirs until `transcribe search reindex --full`."""
    if config is None:
        await conn.execute(CLEAR_KEY_CONFIG, api_key_id)
    else:
        await conn.execute(SET_KEY_CONFIG, api_key_id, check(config))


async def in_use(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    return [r[0] for r in await conn.fetch(CONFIGS_IN_USE)]
