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
import logging
import typing
from typing import Any, Callable

from pydantic import TypeAdapter

from .asgi import Receive, Scope, Send
from .errors import ErrorBody, error_body, send_json

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
DOC_PATH = "/docs.json"

# What the middlewares in front of every API can answer besides 200, and why.
ERROR_STATUSES = {
    "400": "The body or a header is invalid: each invalid field is named with the rule it broke.",
    "413": "The body is larger than the server accepts (1 MiB, 64 MiB where the API takes files; SHIPYARD_MAX_BODY_BYTES).",
    "415": "The Content-Type is not one the API takes (application/json; multipart/form-data where it takes files).",
    "500": "The model's answer broke the output contract and was withheld, or an unexpected error.",
    "503": "Overloaded: the request cannot be answered within its deadline. Retry after Retry-After seconds.",
    "504": "The request was not answered within the server's timeout.",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 1}},
}



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


# JSON Schema's types; BentoML writes others for its own IO types (e.g. `tensor` for numpy arrays).
_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def _valid_schema(node: Any) -> Any:
    """A schema fragment of BentoML's with every non-JSON-Schema `type` kept as `x-bentoml-type`."""
    if isinstance(node, list):
        return [_valid_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: _valid_schema(value) for key, value in node.items()}
    if isinstance(fixed.get("type"), str) and fixed["type"] not in _JSON_TYPES:
        fixed["x-bentoml-type"] = fixed.pop("type")
    return fixed


def _exact_contents(api: Any, registry: SchemaRegistry, theirs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request content, 200 content) from the Python types of a JSON API's signature; raises when
    a type has no JSON Schema of pydantic's, or the API takes or answers another media type."""
    request_media = next(iter((theirs.get("requestBody") or {}).get("content") or {"application/json": {}}))
    answer_media = next(iter(_success(theirs).get("content") or {"application/json": {}}))
    if request_media != "application/json" or answer_media != "application/json":
        raise TypeError(f"{api.name} takes {request_media} and answers {answer_media}")
    request, response, request_name = api_types(api)
    return (_json(registry.of(request, "validation", request_name)), _json(registry.of(response, "serialization")))


def _success(operation: dict[str, Any]) -> dict[str, Any]:
    """BentoML's 200 response of an operation (its document's status keys may be ints)."""
    responses = operation.get("responses") or {}
    return responses.get("200") or responses.get(200) or {}


def _bentoml_contents(api: Any, theirs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request content, 200 content) as BentoML documents the API: its own IO models know files,
    images, numpy arrays and streams (multipart/form-data, text/event-stream, ...). A numpy
    parameter's shape and dtype (bentoml.validators Shape, DType) go into its schema, which
    BentoML leaves out: a body the API refuses must be one the document refuses too."""
    request = _valid_schema((theirs.get("requestBody") or {}).get("content") or _json({"type": "object"}))
    answer = _success(theirs).get("content") or {}
    if MULTIPART in request:
        encoding = _file_encodings(api)
        if encoding:
            request[MULTIPART]["encoding"] = encoding
    schema = (request.get("application/json") or {}).get("schema") or {}
    for name, field in getattr(api.input_spec, "model_fields", {}).items():
        if name not in (schema.get("properties") or {}):
            continue
        kept = {k: v for k, v in schema["properties"][name].items() if k in ("title", "description", "examples")}
        tensor = next((m for m in field.metadata if getattr(m, "format", None) == "numpy-array"), None)
        frame = next((m for m in field.metadata if type(m).__name__ == "DataframeSchema"), None)
        if tensor is not None:
            schema["properties"][name] = {**_tensor_schema(tensor.shape, tensor.dtype), **kept}
        elif frame is not None and frame.columns:
            schema["properties"][name] = {**_frame_schema(frame.orient, list(frame.columns)), **kept}
    tensor_answer = _output_schema(api)
    if tensor_answer.get("type") == "tensor" and "application/json" in answer:
        # A numpy answer: nested arrays as deep as its Shape says; any depth when it says none
        # (BentoML documents a flat list of numbers, which a 2-D answer breaks).
        shape = tensor_answer.get("shape")
        answer = _json(_tensor_schema(tuple(shape), tensor_answer.get("dtype")) if shape else {"type": "array"})
    return request, _valid_schema(answer)


def _output_schema(api: Any) -> dict[str, Any]:
    try:
        return api.output_spec.model_json_schema()
    except Exception:  # noqa: BLE001 - an answer type pydantic cannot describe: nothing to add
        return {}


MULTIPART = "multipart/form-data"


def _file_encodings(api: Any) -> dict[str, Any]:
    """The media type each file field accepts, as OpenAPI says it (a multipart encoding's
    contentType): from a `ContentType` validator, or PNG for a PIL image. BentoML's document
    drops both, so a client could only guess what file to send."""
    encodings: dict[str, Any] = {}
    fields = getattr(api.input_spec, "model_fields", {})
    properties = api.input_spec.model_json_schema().get("properties", {}) if fields else {}
    for name in getattr(api.input_spec, "multipart_fields", []):
        declared = next((m.content_type for m in getattr(fields.get(name), "metadata", [])
                         if isinstance(getattr(m, "content_type", None), str)), None)
        schema = properties.get(name) or {}
        # A PIL image takes any format PIL reads, but a part sent as `image/*` is refused: say PNG.
        media = declared or schema.get("content_type") or ("image/png" if schema.get("format") == "image" else None)
        if media:
            encodings[name] = {"contentType": media}
    return encodings


def _frame_schema(orient: str, columns: list[str]) -> dict[str, Any]:
    """A pandas DataFrame with named columns (bentoml.validators DataframeSchema): every row (or
    column) must name each of them, which BentoML's document leaves out."""
    marker = {"x-bentoml-type": "dataframe"}  # the columns' types are not known: the suites read this
    if orient == "columns":
        return {"type": "object", "required": columns, "properties": {c: {"type": "array"} for c in columns}, **marker}
    return {"type": "array", "items": {"type": "object", "required": columns, "properties": {c: {} for c in columns}},
            **marker}


def _tensor_schema(shape: tuple[int, ...] | None, dtype: str | None) -> dict[str, Any]:
    """Nested JSON arrays for a numpy array: a fixed length where the shape fixes one (-1: any)."""
    kind = str(dtype or "")
    item: dict[str, Any] = ({"type": "boolean"} if kind.startswith("bool") else
                            {"type": "integer"} if kind.startswith(("int", "uint")) else
                            {"type": "string"} if kind.startswith(("str", "<U", "object")) else {"type": "number"})
    for size in reversed(shape or (-1,)):
        item = {"type": "array", "items": item, **({"minItems": size, "maxItems": size} if size >= 0 else {})}
    return item


def _sets_status(api: Any) -> bool:
    """An API with a `bentoml.Context` parameter may set its own success status (201, 202, ...)."""
    try:
        hints = typing.get_type_hints(api.func)
    except Exception:  # noqa: BLE001 - unresolvable hints: look at the annotations' text
        hints = {name: str(p.annotation) for name, p in inspect.signature(api.func).parameters.items()}
    return any("Context" in getattr(hint, "__name__", str(hint)) for hint in hints.values())


def contract_document(service: Any) -> dict[str, Any]:
    """The service's OpenAPI 3.1 document (see the module's docstring). Any service gets one: an
    API whose types pydantic cannot describe, or that is not JSON in and out, is documented as
    BentoML documents it, with the same error statuses."""
    base = service.openapi_spec.asdict()
    registry = SchemaRegistry()
    error_ref = registry.of(ErrorBody, "serialization")
    routes = {api.route for api in service.apis.values()}  # rewritten below; BentoML's infra paths stay
    from .tasks import ROUTES as TASK_ROUTES

    routes |= {f"{api.route}{suffix}" for api in service.apis.values() if api.is_task for suffix in TASK_ROUTES}
    paths = {path: item for path, item in base["paths"].items() if path not in routes}
    if "/readyz" in paths:
        paths["/readyz"]["get"]["responses"]["503"] = {"description": "Not ready (yet): do not send traffic."}
    if "/metrics" in paths:
        paths["/metrics"]["get"]["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    for api in service.apis.values():
        theirs = (base["paths"].get(api.route) or {}).get("post") or {}
        try:
            request, answer = _exact_contents(api, registry, theirs)
        except Exception:  # noqa: BLE001 - any type pydantic cannot describe: BentoML's description
            request, answer = _bentoml_contents(api, theirs)
        responses: dict[str, Any] = {"200": {"description": "Successful Response", "content": answer}}
        if _sets_status(api):
            responses["2XX"] = {"description": "Success, with the status the API sets", "content": answer}
        for status, description in ERROR_STATUSES.items():
            responses[status] = {"description": description, "content": _json(error_ref)}
        responses["503"]["headers"] = RETRY_AFTER
        if api.is_task:
            paths.update(_task_paths(service.name, api, request, responses, error_ref))
        paths[api.route] = {"post": {
            "operationId": f"{service.name}__{api.name}",
            "tags": ["Service APIs"],
            "description": (api.doc or "").strip(),
            "requestBody": {"required": True, "content": request},
            "responses": responses,
        }}
    _add_referenced(registry, paths, (base.get("components") or {}).get("schemas", {}))
    info = {k: v for k, v in base["info"].items() if v is not None}
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": base.get("servers") or [{"url": "."}],
        "tags": base.get("tags", []),
        "paths": _valid_schema(paths),
        "components": {"schemas": _valid_schema(registry.schemas)},
    }


# What a task's status is (BentoML's ResultStatus): its own document lists other words.
TASK_STATES = ["pending", "in_progress", "completed", "failed", "canceled"]
TASK_STATUS = {"type": "object", "title": "TaskStatus", "required": ["task_id", "status"], "properties": {
    "task_id": {"type": "string"}, "status": {"type": "string", "enum": TASK_STATES},
    "created_at": {"type": ["string", "null"]}, "executed_at": {"type": ["string", "null"]}}}
TASK_ID = [{"name": "task_id", "in": "query", "required": True, "schema": {"type": "string"}}]


def _task_paths(service_name: str, api: Any, request: dict[str, Any], answers: dict[str, Any],
                error_ref: dict[str, Any]) -> dict[str, Any]:
    """A task API's submit, status, get and retry operations, as the server answers them (tasks.py).
    Cancel is left out: BentoML's server cannot cancel a task."""
    status = _json(TASK_STATUS)

    def errors(*codes: str) -> dict[str, Any]:
        return {code: {"description": ERROR_STATUSES.get(code) or TASK_ERRORS[code], "content": _json(error_ref)}
                for code in codes}

    def operation(name: str, ok: dict[str, Any], *codes: str, body: bool = False) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": f"{service_name}__{api.name}__{name}", "tags": ["Task APIs"],
                              "responses": {"200": {"description": "Successful Response", "content": ok},
                                            **errors(*codes)}}
        if body:
            op["requestBody"] = {"required": True, "content": request}
        else:
            op["parameters"] = TASK_ID
        return op

    route = api.route
    return {
        f"{route}/submit": {"post": operation("submit", status, "400", "413", "415", "500", body=True)},
        f"{route}/status": {"get": operation("status", status, "400", "404", "500")},
        # A finished job's answer is the API's: its success or the error the API answered.
        f"{route}/get": {"get": {**operation("get", answers["200"]["content"], "404", "409"),
                                 "responses": {**answers, **errors("404", "409")}}},
        f"{route}/retry": {"post": operation("retry", status, "400", "404", "500")},
    }


TASK_ERRORS = {"404": "No task with this task_id.", "409": "The task has not finished yet: ask again later."}


def _add_referenced(registry: SchemaRegistry, paths: dict[str, Any], theirs: dict[str, Any]) -> None:
    """BentoML's components that the operations documented its way refer to (and what those refer
    to), and no others: its own error models are replaced by the error contract's."""
    prefix = REF.format(model="")
    pending = [paths, *registry.schemas.values()]
    while pending:
        text = json.dumps(pending.pop())
        for name in {part.split('"', 1)[0] for part in text.split('"$ref": "' + prefix)[1:]}:
            if name not in registry.schemas and name in theirs:
                registry.schemas[name] = _valid_schema(theirs[name])
                pending.append(registry.schemas[name])


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
            try:
                self._document = contract_document(self.service)
            except Exception as exc:  # noqa: BLE001 - an answer, never a request left hanging
                logging.getLogger(__name__).exception("the OpenAPI document could not be made")
                await send_json(send, 500, error_body(
                    "openapi_failed", f"the OpenAPI document could not be made ({type(exc).__name__}: {exc}); "
                    "run `python -m shipyard_serving.openapi module:Service` in the project to see where"))
                return
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
