"""What the built-in suites send: example bodies per route and each route's share of the load.

From the project's samples file (shipyard.yaml `traffic.samples`, passed as SHIPYARD_SAMPLES):
`{"/route": [body, ...], ...}`, validated here so a typo names the route and the rule. A route
without samples falls back to the examples in the served OpenAPI document.
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
    return examples


def examples_for(document: dict[str, Any], samples: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Every API route with its examples: the samples file's, else the document's ([] if none)."""
    return {route: samples.get(route) or document_examples(document, route) for route in api_routes(document)}


def weights(routes: list[str]) -> dict[str, float]:
    """SHIPYARD_WEIGHTS (shipyard.yaml `traffic.weights`) restricted to known routes, or every route equally."""
    configured = json.loads(os.environ.get("SHIPYARD_WEIGHTS") or "{}")
    unknown = sorted(set(configured) - set(routes))
    if unknown:
        raise TrafficError(f"traffic.weights names {', '.join(unknown)}, which has no samples and no OpenAPI example; "
                           f"routes with examples: {', '.join(routes) or 'none'}")
    return configured or {route: 1.0 for route in routes}
