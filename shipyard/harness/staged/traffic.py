"""What the built-in suites send: example bodies per route and each route's share of the load.

From the project's samples file (shipyard.yaml `traffic.samples`, passed as SHIPYARD_SAMPLES):
`{"/route": [body, ...], ...}`, validated here so a typo names the route and the rule. A route
without samples falls back to the examples in the served OpenAPI document (the request's own, or
one body made of its properties' examples), and a route without those to bodies generated from its
request schema (schemathesis' positive generation, seeded).

Bodies are kept as JSON values and turned into bytes on the wire by `encode`, by the route's media
type: JSON as is; multipart/form-data (BentoML's file, image and mixed inputs) one part per field,
where a file field's value is `"@path"` (curl's convention: a file relative to the samples file)
or, by default, a small file of the media type the document's encoding names (`@shipyard:...`,
shipped with the harness: PNG, JPEG, PDF, WAV, text, CSV, JSON).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, RootModel, ValidationError


class Samples(RootModel[dict[Annotated[str, Field(pattern=r"^/")], Annotated[list[Any], Field(min_length=1)]]]):
    """Route -> at least one example request body."""


class TrafficError(Exception):
    """The samples file or the weights are unusable; the message names the fix."""


def load_samples(path: str | None = None) -> dict[str, list[Any]]:
    path = path if path is not None else os.environ.get("SHIPYARD_SAMPLES", "")
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrafficError(f"samples file {path}: {exc}") from None
    try:
        return Samples.model_validate(raw).root
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise TrafficError(f"samples file {path}: {where} (expected {{\"/route\": [body, ...]}})") from None


JSON = "application/json"
MULTIPART = "multipart/form-data"
FILE_PREFIX = "@"
BUILTIN_PREFIX = "@shipyard:"
MEDIA_DIR = Path(__file__).parent / "media"
# The built-in files, by the media type they are; the first that a field's declared type matches
# is sent (a file field that declares none gets the first: images are BentoML's usual file input).
BUILTIN_FILES = {"image/png": "sample.png", "image/jpeg": "sample.jpg", "application/pdf": "sample.pdf",
                 "audio/wav": "sample.wav", "audio/x-wav": "sample.wav", "text/plain": "sample.txt",
                 "text/csv": "sample.csv", "application/json": "sample.json"}
TASK_SUFFIXES = ("/submit", "/status", "/get", "/retry", "/cancel")


def task_routes(document: dict[str, Any]) -> list[str]:
    """The routes of task APIs (`@bentoml.task`): BentoML serves `/submit`, `/status` and `/get`
    beside the route itself."""
    paths = document.get("paths", {})
    return sorted(path for path in paths
                  if all(f"{path}{suffix}" in paths for suffix in ("/submit", "/status", "/get")))


def api_routes(document: dict[str, Any]) -> list[str]:
    """The service's APIs: the document's POST operations, less a task API's management routes."""
    paths = document.get("paths", {})
    managed = {f"{route}{suffix}" for route in task_routes(document) for suffix in TASK_SUFFIXES}
    return sorted(path for path, item in paths.items() if "post" in item and path not in managed)


def request_media(document: dict[str, Any], route: str) -> str:
    """The media type a route's request body is sent as (the first its document lists)."""
    content = document["paths"][route]["post"].get("requestBody", {}).get("content") or {JSON: {}}
    return next(iter(content))


def _request_content(document: dict[str, Any], route: str) -> dict[str, Any]:
    media = request_media(document, route)
    return document["paths"][route]["post"].get("requestBody", {}).get("content", {}).get(media, {})


def _request_schema(document: dict[str, Any], route: str) -> dict[str, Any]:
    schema = _request_content(document, route).get("schema", {})
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document.get("components", {}).get("schemas", {}).get(name, {})
    return schema


def file_fields(document: dict[str, Any], route: str) -> dict[str, str]:
    """A multipart route's file fields -> the media type each declares (`*/*` when none)."""
    if request_media(document, route) != MULTIPART:
        return {}
    encoding = _request_content(document, route).get("encoding") or {}
    fields = {}
    for name, prop in (_request_schema(document, route).get("properties") or {}).items():
        item = prop.get("items", {}) if prop.get("type") == "array" else prop
        if item.get("format") == "binary" or item.get("x-bentoml-type") == "file":
            fields[name] = str((encoding.get(name) or {}).get("contentType") or "*/*")
    return fields


def opaque_fields(document: dict[str, Any], route: str) -> list[str]:
    """Fields whose valid values the schema cannot say: files (any bytes, but the model wants an
    image it can decode) and DataFrames (named columns of unknown types)."""
    fields = list(file_fields(document, route))
    for name, prop in (_request_schema(document, route).get("properties") or {}).items():
        if isinstance(prop, dict) and prop.get("x-bentoml-type") == "dataframe":
            fields.append(name)
    return fields


def builtin_file(declared: str) -> str:
    """The `@shipyard:` file to send a field that declares `declared` (e.g. `image/*`)."""
    for pattern in (p.strip() for p in declared.split(",")):
        for media, name in BUILTIN_FILES.items():
            if fnmatch.fnmatch(media, pattern):
                return BUILTIN_PREFIX + name
    return BUILTIN_PREFIX + "sample.png"


@dataclass(frozen=True)
class Encoded:
    """A request body as sent: its bytes and Content-Type."""

    content: bytes
    content_type: str


def encode(document: dict[str, Any], route: str, body: Any, base: Path | None = None) -> Encoded:
    """`body` as the route takes it on the wire (see the module's docstring); TrafficError names a
    missing file."""
    if request_media(document, route) != MULTIPART:
        return Encoded(json.dumps(body).encode(), JSON)
    from urllib3 import encode_multipart_formdata

    if not isinstance(body, dict):
        raise TrafficError(f"{route} takes multipart/form-data: a sample must be an object of form fields, not {body!r:.80}")
    files = file_fields(document, route)
    base = base or Path(os.environ.get("SHIPYARD_SAMPLES") or "samples.json").parent
    parts: list[tuple[str, Any]] = []
    for name, value in body.items():
        if name in files:
            for item in value if isinstance(value, list) else [value]:
                parts.append((name, _file_part(route, name, item, base)))
        else:  # BentoML reads a form field as JSON (falling back to the raw text)
            parts.append((name, json.dumps(value)))
    content, content_type = encode_multipart_formdata(parts)
    return Encoded(content, content_type)


def _file_part(route: str, field: str, value: Any, base: Path) -> tuple[str, bytes, str]:
    import mimetypes

    if not isinstance(value, str) or not value.startswith(FILE_PREFIX):
        raise TrafficError(f"{route} field {field!r} is a file: give it as \"@path/to/file\" (relative to the samples "
                           f"file), not {value!r:.80}")
    path = MEDIA_DIR / value[len(BUILTIN_PREFIX):] if value.startswith(BUILTIN_PREFIX) else base / value[1:]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrafficError(f"{route} field {field!r}: cannot read {path}: {exc.strerror}") from None
    return path.name, data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def document_examples(document: dict[str, Any], route: str) -> list[Any]:
    """The request examples the OpenAPI document gives for a route, if any."""
    media = _request_content(document, route)
    examples = [e.get("value") for e in (media.get("examples") or {}).values() if "value" in e]
    if "example" in media:
        examples.append(media["example"])
    schema = _request_schema(document, route)
    examples += list(schema.get("examples") or [])
    return examples or _from_property_examples(schema)


def _from_property_examples(schema: dict[str, Any]) -> list[Any]:
    """One body made of each property's first example, when every required property has one: how
    BentoML's documentation gives examples (`text: str = Field(examples=[...])` on an API's
    parameters), which land on the generated model's properties, not on the model."""
    properties = schema.get("properties") or {}
    chosen = {name: prop["examples"][0] for name, prop in properties.items()
              if isinstance(prop, dict) and prop.get("examples")}
    if not chosen or not set(schema.get("required") or []) <= set(chosen):
        return []
    return [chosen]


GENERATED_PER_ROUTE = 10


def generated_examples(document: dict[str, Any], routes: list[str], count: int = GENERATED_PER_ROUTE) -> dict[str, list[Any]]:
    """Schema-valid request bodies for `routes`, generated from the document (schemathesis'
    positive mode): what a route without samples or examples is sent. Seeded, so a run repeats."""
    if not routes:
        return {}
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode

    generated: dict[str, list[Any]] = {route: [] for route in routes}
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "POST" or operation.path not in generated:
            continue
        bodies = generated[operation.path]

        @hypothesis.settings(max_examples=count, derandomize=True, database=None, deadline=None,
                             phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def collect(case: Any) -> None:
            bodies.append(case.body)

        collect()
    return generated


def examples_for(document: dict[str, Any], samples: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Every API route with its bodies: the samples file's, else the document's examples, else
    bodies generated from the route's request schema (a file field gets a built-in file)."""
    found = {route: samples.get(route) or document_examples(document, route) for route in api_routes(document)}
    missing = [route for route, bodies in found.items() if not bodies]
    generated = generated_examples(document, missing)
    for route in missing:
        files = file_fields(document, route)
        if files:
            made = [_with_files(document, route, files, body) for body in generated.get(route) or [{}]]
            found[route] = [body for i, body in enumerate(made) if body not in made[:i]][:3]
    return {route: bodies or generated.get(route, []) for route, bodies in found.items()}


def _with_files(document: dict[str, Any], route: str, files: dict[str, str], generated: Any) -> dict[str, Any]:
    """A multipart body: a built-in file in each file field, every other field its first example,
    else its default, else what was generated for it."""
    schema = _request_schema(document, route)
    generated = generated if isinstance(generated, dict) else {}
    body: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        if name in files:
            one = builtin_file(files[name])
            body[name] = [one] if prop.get("type") == "array" else one
        elif prop.get("examples"):
            body[name] = prop["examples"][0]
        elif "default" in prop:
            body[name] = prop["default"]
        elif name in generated:
            body[name] = generated[name]
    return body


def weights(routes: list[str]) -> dict[str, float]:
    """SHIPYARD_WEIGHTS (shipyard.yaml `traffic.weights`) restricted to known routes, or every route equally."""
    configured = json.loads(os.environ.get("SHIPYARD_WEIGHTS") or "{}")
    unknown = sorted(set(configured) - set(routes))
    if unknown:
        raise TrafficError(f"traffic.weights names {', '.join(unknown)}, which has no samples and no OpenAPI example; "
                           f"routes with examples: {', '.join(routes) or 'none'}")
    return configured or {route: 1.0 for route in routes}


def plan(url: str) -> tuple[dict[str, list[Encoded]], dict[str, float]]:
    """What load and stress send to the server at `url`: each API route's bodies as bytes (the
    samples file's, else its served document's examples, else generated) and the routes' shares.
    TrafficError when no API has a body to send."""
    import httpx

    document = httpx.get(f"{url.rstrip('/')}/docs.json", timeout=30).json()
    bodies = {route: [encode(document, route, body) for body in examples]
              for route, examples in examples_for(document, load_samples()).items() if examples}
    if not bodies:
        raise TrafficError("no API has a body to send: add a samples file (shipyard.yaml traffic.samples)")
    return bodies, weights(sorted(bodies))
