"""The published API contract: BentoML's OpenAPI document, made exact.

BentoML 1.4 writes `openapi: 3.0.2` but fills it with pydantic v2's JSON Schema 2020-12 (numeric
`exclusiveMinimum`, which 3.0 forbids), flattens `X | None` to plain `X` (so `null`, which the
service sends, is off the document), leaves request bodies optional, and documents 400/404/500 with
its own `InvalidArgument` bodies instead of what the error contract sends; 413, 415, 503 and
`Retry-After` are missing. Validators, code generators and schemathesis stop at the first of these.

The document served here is OpenAPI 3.1.0: its Schema Object *is* JSON Schema 2020-12, which is
exactly what pydantic emits, so the schemas go in unchanged (no lossy translation to 3.0). Each
API's request and response schemas come from the Python types of its signature (the same types
the service validates with and the typed client uses), bodies are required, and every status the
middlewares and the service can send is documented with the error contract's schema (`Error`).
It is built once per process, from the service object, for any BentoML service.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any, Awaitable, Callable

from pydantic import TypeAdapter

from .errors import ErrorBody, send_json

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
DOC_PATH = "/docs.json"

# What the middlewares in front of every API can answer besides 200, and why.
ERROR_STATUSES = {
    "400": "The body or a header is invalid: each invalid field is named with the rule it broke.",
    "413": "The body is larger than the server accepts (SHIPYARD_MAX_BODY_BYTES).",
    "415": "The Content-Type is not application/json.",
    "500": "The model's answer broke the output contract and was withheld, or an unexpected error.",
    "503": "Overloaded: the request cannot be answered within its deadline. Retry after Retry-After seconds.",
    "504": "The request was not answered within the server's timeout.",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 1}},
}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SchemaRegistry:
    """components/schemas, filled from pydantic's JSON Schemas. Every name means one schema: two
    different models with one name (BentoML names every API's generated model `Input`; two modules
    may both define `Ticket`) get stable, distinct names, and the references follow."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def _free_name(self, name: str, schema: dict[str, Any]) -> str:
        """`name` if it is free or already means `schema`; else the first `name2`, `name3`... that is."""
        candidate, n = name, 1
        while candidate in self.schemas and self.schemas[candidate] != schema:
            n += 1
            candidate = f"{name}{n}"
        return candidate

    def of(self, typ: Any, mode: str, name: str | None = None) -> dict[str, Any]:
        """The schema for a Python type; named models go to components and are referenced. `name`
        names the type's own schema when its title would say nothing (BentoML's generated models)."""
        schema = TypeAdapter(typ).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        defs: dict[str, Any] = schema.pop("$defs", {})
        top = inspect.isclass(typ) and "title" in schema and schema.get("type") in ("object", "array")
        if top and name:
            schema["title"] = name
        # Rename what collides, then rewrite every reference of this batch to the names it got.
        wanted = {**defs, **({schema["title"]: schema} if top else {})}
        renamed = {old: self._free_name(old, sub) for old, sub in wanted.items()}
        if any(old != new for old, new in renamed.items()):
            text = json.dumps([schema, defs])
            for old, new in renamed.items():
                text = text.replace(json.dumps(REF.format(model=old)), json.dumps(REF.format(model=new)))
            schema, defs = json.loads(text)
        for old, sub in defs.items():
            self.schemas[renamed[old]] = sub
        if top:
            final = self._free_name(renamed[schema["title"]], schema)
            self.schemas[final] = schema
            return {"$ref": REF.format(model=final)}
        return schema


def api_types(api: Any) -> tuple[Any, Any, str | None]:
    """(request type, response type, a name for the request's schema when BentoML generated the
    request model) of a BentoML API, from its Python signature."""
    hints = typing.get_type_hints(api.func, include_extras=True)
    response = hints.get("return", Any)
    if getattr(api.input_spec, "__root_input__", False):
        params = [p for name, p in inspect.signature(api.func).parameters.items() if name != "self"]
        return hints.get(params[0].name, Any), response, None
    # The model BentoML built from the keyword parameters: `Input` for every API, so named by its API.
    return api.input_spec, response, _pascal(api.name) + "Input"


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def contract_document(service: Any) -> dict[str, Any]:
    """The service's OpenAPI 3.1 document (see the module's docstring)."""
    base = service.openapi_spec.asdict()
    registry = SchemaRegistry()
    error_ref = registry.of(ErrorBody, "serialization")
    routes = {api.route for api in service.apis.values()}  # rewritten below; BentoML's infra paths stay
    paths = {path: item for path, item in base["paths"].items() if path not in routes}
    if "/readyz" in paths:
        paths["/readyz"]["get"]["responses"]["503"] = {"description": "Not ready (yet): do not send traffic."}
    if "/metrics" in paths:
        paths["/metrics"]["get"]["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    for api in service.apis.values():
        request, response, request_name = api_types(api)
        responses: dict[str, Any] = {"200": {"description": "Successful Response",
                                             "content": _json(registry.of(response, "serialization"))}}
        for status, description in ERROR_STATUSES.items():
            responses[status] = {"description": description, "content": _json(error_ref)}
        responses["503"]["headers"] = RETRY_AFTER
        paths[api.route] = {"post": {
            "operationId": f"{service.name}__{api.name}",
            "tags": ["Service APIs"],
            "description": (api.doc or "").strip(),
            "requestBody": {"required": True, "content": _json(registry.of(request, "validation", request_name))},
            "responses": responses,
        }}
    info = {k: v for k, v in base["info"].items() if v is not None}
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": base.get("servers") or [{"url": "."}],
        "tags": base.get("tags", []),
        "paths": paths,
        "components": {"schemas": registry.schemas},
    }


class OpenAPIMiddleware:
    """Serves contract_document(service) on GET /docs.json, built on first use and then cached."""

    def __init__(self, app: Callable, service: Any) -> None:
        self.app = app
        self.service = service
        self._document: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != DOC_PATH or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._document is None:
            self._document = contract_document(self.service)
        await send_json(send, 200, self._document)



def main() -> None:
    """`python -m shipyard_serving.openapi module:Service`: print a service's document, for
    clients and reviewers (run where the service imports, e.g. a project's root)."""
    import importlib
    import json
    import sys

    if len(sys.argv) != 2 or ":" not in sys.argv[1]:
        raise SystemExit("usage: python -m shipyard_serving.openapi module:Service   (e.g. myapp.service:MyService)")
    module, _, name = sys.argv[1].partition(":")
    print(json.dumps(contract_document(getattr(importlib.import_module(module), name)), indent=2))


if __name__ == "__main__":
    main()
