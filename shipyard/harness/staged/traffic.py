"""What the built-in suites send: example bodies per route and each route's share of the load.

From the project's samples file (shipyard.yaml `traffic.samples`, passed as SHIPYARD_SAMPLES):
`{"/route": [body, ...], ...}`, validated here so a typo names the route and the rule. A route
without samples falls back to the examples in the served OpenAPI document (the request's own, or
one body made of its properties' examples), and a route without those to bodies generated from its
request schema (schemathesis' positive generation, seeded).
"""

from __future__ import annotations

import json
import os
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


def api_routes(document: dict[str, Any]) -> list[str]:
    """The document's POST operations: a BentoML service's APIs."""
    return sorted(path for path, item in document.get("paths", {}).items() if "post" in item)


def document_examples(document: dict[str, Any], route: str) -> list[Any]:
    """The request examples the OpenAPI document gives for a route, if any."""
    content = document["paths"][route]["post"].get("requestBody", {}).get("content", {})
    media = content.get("application/json", {})
    examples = [e.get("value") for e in (media.get("examples") or {}).values() if "value" in e]
    if "example" in media:
        examples.append(media["example"])
    schema = media.get("schema", {})
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document.get("components", {}).get("schemas", {}).get(name, {})
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
    bodies generated from the route's request schema."""
    found = {route: samples.get(route) or document_examples(document, route) for route in api_routes(document)}
    generated = generated_examples(document, [route for route, bodies in found.items() if not bodies])
    return {route: bodies or generated.get(route, []) for route, bodies in found.items()}


def weights(routes: list[str]) -> dict[str, float]:
    """SHIPYARD_WEIGHTS (shipyard.yaml `traffic.weights`) restricted to known routes, or every route equally."""
    configured = json.loads(os.environ.get("SHIPYARD_WEIGHTS") or "{}")
    unknown = sorted(set(configured) - set(routes))
    if unknown:
        raise TrafficError(f"traffic.weights names {', '.join(unknown)}, which has no samples and no OpenAPI example; "
                           f"routes with examples: {', '.join(routes) or 'none'}")
    return configured or {route: 1.0 for route in routes}
