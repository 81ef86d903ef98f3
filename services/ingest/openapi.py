"""The OpenAPI 3.0 document of the ingest API, produced by one mechanism.

- Each route module keeps its routes in an `ApiRoutes` table (`ROUTES`), documenting each one
  beside its handler: `@ROUTES.get(path, summary=..., params=..., responses={200: Status,
  404: "no such job"})`; `ROUTES.register(app)` adds them to the app.
- Bodies are msgspec Structs (services/ingest/bodies.py), the types the handlers answer with;
  their JSON Schema comes from `msgspec.json.schema_components`, rewritten for OpenAPI 3.0
  (refs under `#/components/schemas`, `nullable` instead of a `null` type). Enums are the code's
  own Literal types (models, timestamps, statuses).
- `build(app)` walks the app's router: every route takes the operation its table documents. A
  route no table documents still appears, described by its handler's docstring, so the
  document never silently misses an endpoint (`undocumented(app)` lists them; a test keeps it
  empty for the real app). A module without a table may give raw `OPENAPI = {path: {method:
  operation}}`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from libs.webhooks.payload import WEBHOOKS
from services.ingest.bodies import ErrorBody

TITLE = "Transcription gateway"
VERSION = "1.0.0"
REF = "#/components/schemas/{name}"

Body = type[msgspec.Struct]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

STRING: Mapping[str, Any] = {"type": "string"}
UUID: Mapping[str, Any] = {"type": "string", "format": "uuid"}
DATE_TIME: Mapping[str, Any] = {"type": "string", "format": "date-time"}
BOOLEAN: Mapping[str, Any] = {"type": "boolean"}
URI: Mapping[str, Any] = {"type": "string", "format": "uri"}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    description: str = ""
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: STRING)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where}
        if self.description:
            out["description"] = self.description
        out["required"] = self.required or self.where == "path"
        out["schema"] = dict(self.schema)
        return out


def in_path(name: str, description: str = "", schema: Mapping[str, Any] = STRING) -> Param:
    return Param(name, "path", description, True, schema)


def in_query(
    name: str, description: str = "", schema: Mapping[str, Any] = STRING, *, required: bool = False
) -> Param:
    return Param(name, "query", description, required, schema)


def in_header(
    name: str, description: str = "", schema: Mapping[str, Any] = STRING, *, required: bool = False
) -> Param:
    return Param(name, "header", description, required, schema)


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: a JSON body Struct, or other media types with their schemas."""

    description: str
    body: Body | None = None
    media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retry_after: bool = False
    # Response headers the reply may carry: name -> description (string values).
    headers: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description}
        content = {media: {"schema": dict(schema)} for media, schema in self.media.items()}
        if self.body is not None:
            content["application/json"] = {"schema": {"$ref": _ref(self.body)}}
        if content:
            out["content"] = content
        headers: dict[str, Any] = {
            name: {"schema": {"type": "string"}, "description": description}
            for name, description in self.headers.items()
        }
        if self.retry_after:
            headers["Retry-After"] = {"schema": {"type": "integer"}, "description": "seconds"}
        if headers:
            out["headers"] = headers
        return out


def error(description: str, *, retry_after: bool = False) -> Reply:
    return Reply(description, ErrorBody, retry_after=retry_after)


# What every authenticated route may answer besides its own responses.
HEADER_ERRORS = (
    "a header the API reads (X-API-Key, Idempotency-Key) that is not UTF-8 text, holds control "
    "characters, is too long or is sent twice (`invalid_header`, `header_too_long`, "
    "`duplicate_header`)"
)
AUTH_ERRORS: Mapping[int, Reply] = {
    400: error(HEADER_ERRORS),
    401: error("missing or invalid X-API-Key (or console session: `session_expired`)"),
    403: error(
        "with the console session cookie: X-CSRF-Token or Origin missing or wrong "
        "(`csrf_failed`), or the user's role is too low (`insufficient_role`)"
    ),
    429: error("rate limit of the key exceeded (token bucket); see Retry-After", retry_after=True),
    503: error(
        "Postgres or object storage unavailable, or the process is handling "
        "INGEST_MAX_CONNECTIONS requests (`overloaded`); retry after Retry-After",
        retry_after=True,
    ),
}


@dataclass(frozen=True, slots=True)
class Form:
    """A form request body (urlencoded; multipart too when `upload` names a file part).

    `one_of`: fields of which exactly one must be given (with the upload part, in multipart),
    rendered as `oneOf` of `required` alternatives: exactly one alternative holds exactly when
    exactly one of those fields is present."""

    fields: Body
    upload: str | None = None
    one_of: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    summary: str
    responses: Mapping[int, Reply]
    tag: str
    description: str = ""
    params: tuple[Param, ...] = ()
    form: Form | None = None
    authenticated: bool = True
    # The query parameters may come as a form or a JSON object instead (the webhook POSTs).
    params_in_body: bool = False
    # A JSON request body, described by its Struct.
    json: Body | None = None

    def bodies(self) -> set[Body]:
        found = {r.body for r in self.responses.values() if r.body is not None}
        if self.json is not None:
            found.add(self.json)
        if self.form is not None:
            found.add(self.form.fields)
        if self.authenticated:
            found.add(ErrorBody)
        return found

    def render(self, schemas: Mapping[str, Any]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "operationId": self.operation_id,
            "tags": [self.tag],
            "summary": self.summary,
        }
        if self.description:
            op["description"] = self.description
        if not self.authenticated:
            op["security"] = []
        if self.params:
            op["parameters"] = [p.render() for p in self.params]
        if self.form is not None:
            op["requestBody"] = _form_body(self.form, schemas)
        elif self.params_in_body:
            op["requestBody"] = _params_body(self.params)
        elif self.json is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": _ref(self.json)}}},
            }
        responses = dict(self.responses)
        if self.authenticated:
            own_400 = responses.get(400)
            responses = dict(AUTH_ERRORS) | responses
            if own_400 is not None:
                # Its own bad inputs, and the headers every authenticated route checks.
                responses[400] = replace(
                    own_400, description=f"{own_400.description}; or {HEADER_ERRORS}"
                )
        op["responses"] = {str(code): responses[code].render() for code in sorted(responses)}
        return op


def _form_body(form: Form, schemas: Mapping[str, Any]) -> dict[str, Any]:
    # Inline, so the form's fields are readable right at the operation.
    fields = dict(schemas[form.fields.__name__])
    urlencoded = fields | _exactly_one(form.one_of)
    content: dict[str, Any] = {"application/x-www-form-urlencoded": {"schema": urlencoded}}
    if form.upload is not None:
        properties = dict(fields.get("properties", {}))
        properties[form.upload] = {"type": "string", "format": "binary"}
        one_of = (*form.one_of, form.upload) if form.one_of else ()
        content["multipart/form-data"] = {
            "schema": fields | {"properties": properties} | _exactly_one(one_of)
        }
    return {"required": True, "content": content}


def _params_body(params: Iterable[Param]) -> dict[str, Any]:
    """The query parameters as an optional form or JSON object (either place works; required
    ones must be in one of them, so the body itself requires nothing)."""
    schema = {
        "type": "object",
        "properties": {p.name: dict(p.schema) for p in params if p.where == "query"},
    }
    media = ("application/json", "application/x-www-form-urlencoded")
    return {
        "required": False,
        "description": "the query parameters, as a JSON object or a form instead",
        "content": {m: {"schema": schema} for m in media},
    }


def _exactly_one(names: tuple[str, ...]) -> dict[str, Any]:
    if not names:
        return {}
    return {"oneOf": [{"required": [name]} for name in names]}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation: Operation


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


class ApiRoutes:
    """The routes of one module with their documentation."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: Mapping[int, Body | Reply | str],
        params: Iterable[Param] = (),
        form: Form | None = None,
        description: str = "",
        operation_id: str | None = None,
        authenticated: bool = True,
        params_in_body: bool = False,
        json: Body | None = None,
    ) -> Callable[[H], H]:
        """Document and collect a handler. Stacked decorators register bottom-up: put the more
        specific path nearest the function."""

        def replies() -> dict[int, Reply]:
            out: dict[int, Reply] = {}
            for code, reply in responses.items():
                if isinstance(reply, Reply):
                    out[code] = reply
                elif isinstance(reply, str):
                    out[code] = error(reply, retry_after=code in (429, 503))
                else:
                    doc = inspect.getdoc(reply) or reply.__name__
                    out[code] = Reply(doc.split("\n\n")[0].replace("\n", " "), reply)
            return out

        def decorate(handler: H) -> H:
            operation = Operation(
                operation_id=operation_id or _camel(handler.__name__),
                summary=summary,
                responses=replies(),
                tag=self.tag,
                description=description or _description(handler),
                params=tuple(params),
                form=form,
                authenticated=authenticated,
                params_in_body=params_in_body,
                json=json,
            )
            self.routes.append(Route(method, path, handler, operation))
            return handler

        return decorate

    def get(self, path: str, **doc: Any) -> Callable[[H], H]:
        return self.route("GET", path, **doc)

    def post(self, path: str, **doc: Any) -> Callable[[H], H]:
        return self.route("POST", path, **doc)

    def put(self, path: str, **doc: Any) -> Callable[[H], H]:
        return self.route("PUT", path, **doc)

    def delete(self, path: str, **doc: Any) -> Callable[[H], H]:
        return self.route("DELETE", path, **doc)

    def patch(self, path: str, **doc: Any) -> Callable[[H], H]:
        return self.route("PATCH", path, **doc)

    def register(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)

    def operations(self) -> dict[tuple[str, str], Operation]:
        return {(r.path, r.method.lower()): r.operation for r in self.routes}

    def paths(self) -> dict[str, dict[str, dict[str, Any]]]:
        """This table's part of the document: `{path: {method: operation}}`."""
        schemas = components(op.bodies() for op in self.operations().values())
        paths: dict[str, dict[str, dict[str, Any]]] = {}
        for (path, method), op in self.operations().items():
            paths.setdefault(path, {})[method] = op.render(schemas)
        return paths


def _description(handler: Handler) -> str:
    doc = inspect.getdoc(handler) or ""
    return doc.replace("\n", " ")


def _ref(body: Body) -> str:
    return REF.format(name=body.__name__)


def components(groups: Iterable[Iterable[Body]]) -> dict[str, Any]:
    """`#/components/schemas` for these Structs and every type they refer to."""
    types = sorted({t for group in groups for t in group}, key=lambda t: t.__name__)
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    converted: dict[str, Any] = _openapi30(schemas)
    return dict(sorted(converted.items()))


def _openapi30(node: Any) -> Any:
    """JSON Schema (2020-12, as msgspec writes it) -> the OpenAPI 3.0 schema dialect: a `null`
    alternative becomes `nullable: true`; an enum gets its type; a tuple (an empty tuple's
    default) is the array it is in JSON."""
    if isinstance(node, list | tuple):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi30(v) for k, v in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            only = rest[0]
            if "$ref" in only:
                out["allOf"] = [only]
            else:
                out = only | out
        elif rest:
            out["anyOf"] = rest
        out["nullable"] = True
    if out.get("required") == []:
        del out["required"]  # 3.0 wants at least one entry, or none at all
    enum = out.get("enum")
    if isinstance(enum, list) and "type" not in out and all(isinstance(v, str) for v in enum):
        out["type"] = "string"
    return out


def _documented(
    modules: Iterable[ModuleType],
) -> tuple[dict[tuple[str, str], Operation], dict[str, Any]]:
    tables: dict[tuple[str, str], Operation] = {}
    raw: dict[str, Any] = {}
    for module in modules:
        table = getattr(module, "ROUTES", None)
        if isinstance(table, ApiRoutes):
            tables.update(table.operations())
            continue
        extra: Mapping[str, dict[str, Any]] = getattr(module, "OPENAPI", {})
        for path, ops in extra.items():
            raw.setdefault(path, {}).update(ops)
    return tables, raw


def _all_modules(modules: Iterable[ModuleType]) -> list[ModuleType]:
    # Imported here: the route modules import this one.
    from services.ingest.routes import ROUTE_MODULES

    return [*ROUTE_MODULES, *(m for m in modules if m not in ROUTE_MODULES)]


def _app_routes(app: web.Application) -> Iterator[tuple[str, str, web.AbstractRoute]]:
    for route in app.router.routes():
        if route.resource is None or route.method in ("HEAD", "*"):
            continue
        yield route.resource.canonical, route.method.lower(), route


def undocumented(app: web.Application, modules: Iterable[ModuleType] = ()) -> list[str]:
    """Routes of the app that no route table (nor raw OPENAPI) documents."""
    tables, raw = _documented(_all_modules(modules))
    return [
        f"{method.upper()} {path}"
        for path, method, _ in _app_routes(app)
        if (path, method) not in tables and method not in raw.get(path, {})
    ]


def build(app: web.Application, modules: Iterable[ModuleType] = ()) -> dict[str, Any]:
    """The document of every route registered in `app`: the ingest route modules' tables, plus
    those of `modules`."""
    tables, raw = _documented(_all_modules(modules))
    # The webhook bodies receivers get are schemas too, though no route answers them.
    schemas = components([*(op.bodies() for op in tables.values()), WEBHOOKS])
    paths: dict[str, dict[str, Any]] = {}
    for path, method, route in _app_routes(app):
        op = tables.get((path, method))
        if op is not None:
            rendered = op.render(schemas)
        else:
            rendered = raw.get(path, {}).get(method) or _undocumented(route)
        paths.setdefault(path, {})[method] = rendered
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Reference-compatible transcription gateway API. Errors are JSON "
            "{error, detail}; a dependency outage answers 503 with Retry-After.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                # The web console's session (POST /api/session); state-changing requests also
                # send X-CSRF-Token and the gateway's Origin (docs/console-api.md).
                "ConsoleSession": {"type": "apiKey", "in": "cookie", "name": "tg_session"},
            },
            "schemas": schemas,
        },
        "security": [{"ApiKey": []}, {"ConsoleSession": []}],
    }


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
