"""Contract: requests generated from the service's own OpenAPI schema (hypothesis-jsonschema).

Valid cases must succeed and match the Score schema; invalid ones (one field broken at a time:
missing, unknown, wrong type, just past a bound, breaking a pattern) must get a 4xx naming that
field. Any 5xx fails the suite. Seeded, so a failure replays.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from service.schemas import Score
from tests.staged.conftest import setting

EXAMPLES = int(setting("examples", "2000"))
SEED = int(setting("seed", "7"))
_SEEN = {"cases": 0, "valid_cases": 0, "invalid_cases": 0, "server_errors": 0, "contract_failures": 0}


def _inline(node, components):
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(copy.deepcopy(components[node["$ref"].rsplit("/", 1)[1]]), components)
        return {k: _inline(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, components) for v in node]
    return node


@pytest.fixture(scope="module")
def transaction_schema(client):
    spec = client.get("/docs.json").json()
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = _inline(body, spec["components"]["schemas"])
    schema.pop("title", None)
    return schema


def _count(key: str) -> None:
    from tests.staged.conftest import _METRICS

    _SEEN[key] += 1
    _METRICS.update(_SEEN)


def _mutations(schema):
    props, required = schema["properties"], schema.get("required", [])

    def out_of_range(field):
        spec = _scalar(props[field])
        if "maximum" in spec:
            return spec["maximum"] + (1 if spec.get("type") == "integer" else 0.5)
        if "exclusiveMinimum" in spec:
            return spec["exclusiveMinimum"]
        if "minimum" in spec:
            return spec["minimum"] - 1
        return None

    choices = []
    for field in props:
        if field in required:
            choices.append(("missing", field))
        choices.append(("wrong_type", field))
        if out_of_range(field) is not None:
            choices.append(("out_of_range", field))
        if "pattern" in _scalar(props[field]) or "enum" in _scalar(props[field]):
            choices.append(("bad_string", field))
    choices.append(("unknown", "surprise_field"))
    return choices, out_of_range


def _scalar(spec):
    for alt in spec.get("anyOf", []):
        if alt.get("type") != "null":
            return alt
    return spec


def test_valid_requests_are_scored_and_match_the_output_contract(client, transaction_schema):
    @seed(SEED)
    @settings(max_examples=max(1, EXAMPLES // 2), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(from_schema(transaction_schema))
    def check(tx):
        _count("cases")
        _count("valid_cases")
        resp = client.post("/score", json=tx)
        if resp.status_code >= 500:
            _count("server_errors")
        if resp.status_code != 200:
            _count("contract_failures")
        assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]} for {json.dumps(tx)}"
        Score.model_validate(resp.json())

    check()


def test_invalid_requests_get_a_4xx_naming_the_field(client, transaction_schema):
    choices, out_of_range = _mutations(transaction_schema)

    @seed(SEED)
    @settings(max_examples=max(1, EXAMPLES // 2), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(from_schema(transaction_schema), st.sampled_from(choices))
    def check(tx, mutation):
        kind, field = mutation
        bad = dict(tx)
        if kind == "missing":
            bad.pop(field, None)
        elif kind == "unknown":
            bad[field] = 1
        elif kind == "wrong_type":
            bad[field] = [] if not isinstance(bad.get(field), list) else "x"
        elif kind == "out_of_range":
            bad[field] = out_of_range(field)
        elif kind == "bad_string":
            bad[field] = "not a valid value!"
        _count("cases")
        _count("invalid_cases")
        resp = client.post("/score", json=bad)
        if resp.status_code >= 500:
            _count("server_errors")
        ok = 400 <= resp.status_code < 500 and field in [f["field"] for f in resp.json().get("fields", [])]
        if not ok:
            _count("contract_failures")
        assert ok, f"{kind} {field}: {resp.status_code} {resp.text[:300]}"

    check()
