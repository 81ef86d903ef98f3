"""The OpenAPI 3.0 document of the ingest API, built from the routes actually registered.

Every route of the app appears: a route module documents its operations in a module-level
`OPENAPI = {path: {method: operation}}`; a route nobody documented still appears, described by
its handler's docstring, so `/openapi.json` can never silently miss an endpoint. (The reference
troubleshooting notes tell operators to check `/openapi.json` for the submit fields.)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from aiohttp import web

TITLE = "Transcription gateway"
VERSION = "1.0.0"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _retry_later(description: str) -> dict[str, Any]:
    return _error(description) | {
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    }


AUTH_ERRORS: dict[str, Any] = {
    "401": _error("missing or invalid X-API-Key"),
    "429": _retry_later("rate limit of the key exceeded (token bucket); see Retry-After"),
    "503": _retry_later("Postgres or object storage unavailable; retry after Retry-After"),
}
JOB_ID = {
    "name": "audio_file_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}

_SUBMIT_FIELDS: dict[str, Any] = {
    "recording_id": {
        "type": "string",
        "description": "id in public.recordings (text; exact match first, then a location "
        "match with LIKE wildcards escaped)",
    },
    "url": {"type": "string", "format": "uri", "description": "http(s) URL of the recording"},
    "b2_prefix": {
        "type": "string",
        "description": "tenant namespace for the object key (letters, digits, '.', '_', '-', "
        "'/' between segments; no '..', no leading '/'); default GATEWAY_B2_PREFIX or the key's",
    },
    "phone": {"type": "string", "description": "fallback when the database has none"},
    "campaign": {"type": "string", "description": "fallback campaign name"},
    "campaign_id": {"type": "string", "description": "fallback campaign id (name from the DB)"},
    "company": {"type": "string"},
    "callback_url": {"type": "string", "format": "uri", "description": "webhook for this job"},
    "model": {
        "type": "string",
        "enum": ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "offline"],
    },
    "language": {"type": "string", "description": "ISO-639 code, e.g. en"},
    "timestamps": {"type": "string", "enum": ["none", "segment", "word"], "default": "segment"},
}

JOB_OPERATIONS: dict[str, dict[str, Any]] = {
    "/api/media/transcribe": {
        "post": {
            "operationId": "submit",
            "summary": "Submit a recording (exactly one of recording_id, url, file)",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "a retry with the same key returns the same job",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": _SUBMIT_FIELDS}
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": _SUBMIT_FIELDS
                            | {"file": {"type": "string", "format": "binary"}},
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "accepted (or the existing job for the same URL / key)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                    },
                },
                "400": _error("bad form, URL refused (SSRF guard), invalid b2_prefix or option"),
                "403": _error("b2_prefix outside the key's tenant prefix"),
                "404": _error("recording_id not found"),
                "409": _error(
                    "recording_id matches several recordings, or an identical submission is "
                    "still in progress"
                ),
                "413": _error("the recording exceeds MAX_UPLOAD_BYTES"),
                "415": _error("not a recognised audio format, or not a form content type"),
                "422": _error("the download failed (upstream status, timeout, empty body)"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/media/status/{audio_file_id}": {
        "get": {
            "operationId": "status",
            "summary": "Job status, transcript and metadata",
            "parameters": [JOB_ID],
            "responses": {
                "200": {
                    "description": "the job",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                    },
                },
                "404": _error("no such job for this key"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/media/rerun/{audio_file_id}": {
        "post": {
            "operationId": "rerun",
            "summary": "Requeue a completed or failed job for a new transcription",
            "parameters": [
                JOB_ID,
                {
                    "name": "force",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean"},
                    "description": "requeue even a job that is still queued or running",
                },
            ],
            "responses": {
                "200": {
                    "description": "requeued",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "audio_file_id": {"type": "string"},
                                    "status": {"type": "string", "enum": ["QUEUED"]},
                                },
                            }
                        }
                    },
                },
                "404": _error("no such job for this key"),
                "409": _error("the job is still queued or running (use force=true)"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/media/transcript/{audio_file_id}.{fmt}": {
        "get": {
            "operationId": "transcript",
            "summary": "Download the transcript as txt, json, srt or vtt",
            "parameters": [
                JOB_ID,
                {
                    "name": "fmt",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["txt", "json", "srt", "vtt"]},
                },
            ],
            "responses": {
                "200": {
                    "description": "the transcript file",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}},
                        "application/x-subrip": {"schema": {"type": "string"}},
                        "text/vtt": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("unknown format"),
                "404": _error("no such job for this key"),
                "409": _error("the transcript is not ready yet"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/media/transcript/{audio_file_id}": {
        "get": {
            "operationId": "transcriptByQuery",
            "summary": "Download the transcript; ?format=txt|json|srt|vtt (default txt)",
            "parameters": [
                JOB_ID,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["txt", "json", "srt", "vtt"]},
                },
            ],
            "responses": {
                "200": {"description": "the transcript file"},
                "400": _error("unknown format"),
                "404": _error("no such job for this key"),
                "409": _error("the transcript is not ready yet"),
                **AUTH_ERRORS,
            },
        }
    },
}

PLAIN_OPERATIONS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: the process answers",
            "security": [],
            "responses": {"200": {"description": "alive"}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: Postgres, NATS and object storage reachable",
            "security": [],
            "responses": {
                "200": {"description": "ready"},
                "503": _retry_later("a dependency is unavailable (named in checks)"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "security": [],
            "responses": {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0 document"}},
        }
    },
    "/docs": {
        "get": {
            "operationId": "docs",
            "summary": "Interactive documentation (Swagger UI, served offline)",
            "security": [],
            "responses": {"200": {"description": "HTML page"}},
        }
    },
    "/docs/{asset}": {
        "get": {
            "operationId": "docsAsset",
            "summary": "Swagger UI assets",
            "security": [],
            "parameters": [
                {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "asset"}, "404": {"description": "unknown"}},
        }
    },
}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
        "Accepted": {
            "type": "object",
            "required": ["audio_file_id", "status", "b2_key", "b2_url"],
            "properties": {
                "audio_file_id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["QUEUED"]},
                "b2_key": {
                    "type": "string",
                    "description": "[<b2_prefix>/]<campaign>/audio/<phone>/<uuid>.<ext>",
                },
                "b2_url": {"type": "string"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["status", "transcript", "metadata"],
            "properties": {
                "status": {"type": "string", "enum": ["pending", "completed", "failed"]},
                "transcript": {"type": "string", "nullable": True},
                "metadata": {
                    "type": "object",
                    "description": "b2_transcript_json_key / b2_transcript_txt_key (and srt, "
                    "vtt) when completed; error when failed",
                    "additionalProperties": True,
                },
            },
        },
    },
}


def _documented(modules: Iterable[ModuleType]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for source in (JOB_OPERATIONS, PLAIN_OPERATIONS):
        for path, ops in source.items():
            paths.setdefault(path, {}).update(ops)
    for module in modules:
        extra: Mapping[str, dict[str, Any]] = getattr(module, "OPENAPI", {})
        for path, ops in extra.items():
            paths.setdefault(path, {}).update(ops)
    return paths


def _undocumented(route: web.AbstractRoute) -> dict[str, Any]:
    doc = inspect.getdoc(route.handler) or "Undocumented operation."
    summary, _, description = doc.partition("\n\n")
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(route)
    ]
    return {
        "summary": summary.replace("\n", " "),
        "description": description,
        "parameters": params,
        "responses": {"default": {"description": "see the summary"}},
    }


def _path_params(route: web.AbstractRoute) -> list[str]:
    info = route.resource.get_info() if route.resource else {}
    pattern = info.get("formatter", "")
    names: list[str] = []
    for part in str(pattern).split("{")[1:]:
        names.append(part.split("}", 1)[0].split(":", 1)[0])
    return names


def build(app: web.Application, modules: Iterable[ModuleType]) -> dict[str, Any]:
    documented = _documented(modules)
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.resource is None or route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical
        method = route.method.lower()
        op = documented.get(path, {}).get(method) or _undocumented(route)
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Reference-compatible transcription gateway API. Errors are JSON "
            "{error, detail}; a dependency outage answers 503 with Retry-After.",
        },
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
        "security": [{"ApiKey": []}],
    }
