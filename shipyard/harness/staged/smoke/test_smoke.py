"""Smoke: the service started and answers as a Bento must, whatever its model.

Health (readiness and liveness), metrics, the OpenAPI document, every API answering one valid
example (from the project's samples, else the document's examples) and refusing one invalid body
with a 4xx, and the served Bento being the one the environment should run (BentoML's own metrics
carry the Bento version).
"""

from __future__ import annotations

import os
import re

import pytest

from shipyard.harness.staged.traffic import api_routes, examples_for, load_samples

# Not a body any BentoML API accepts: every API takes a JSON object or array.
INVALID_BODY = '"shipyard smoke: not a request body"'


def test_ready_and_live(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_metrics_and_openapi_are_reachable(client, document):
    assert client.get("/metrics").status_code == 200
    assert api_routes(document), "the OpenAPI document lists no API (no POST operation)"


@pytest.fixture(scope="module")
def routes(document):
    """Every API with its bodies, worked out once (generating bodies from the schema takes a while)."""
    return examples_for(document, load_samples())


def test_every_api_answers_a_valid_example(client, routes, record):
    answered, missing, refused = 0, [], []
    for route, examples in routes.items():
        if not examples:
            missing.append(route)
            continue
        resp = client.post(route, json=examples[0])
        if resp.status_code == 200:
            answered += 1
        else:
            refused.append(f"{route}: HTTP {resp.status_code} {resp.text[:300]}")
    record("apis_answered", answered)
    assert not missing, (f"no example body for {', '.join(missing)}: add one to the samples file "
                         "(shipyard.yaml traffic.samples) or an example to the API's input schema")
    assert not refused, "a valid example was not answered 200:\n" + "\n".join(refused)


def test_every_api_refuses_an_invalid_body_with_a_4xx(client, document):
    wrong = []
    for route in api_routes(document):
        resp = client.post(route, content=INVALID_BODY, headers={"content-type": "application/json"})
        if not 400 <= resp.status_code < 500:
            wrong.append(f"{route}: HTTP {resp.status_code} {resp.text[:200]}")
    assert not wrong, "an invalid body was not refused with a 4xx:\n" + "\n".join(wrong)


def test_the_served_bento_is_the_expected_one(client, routes):
    """BentoML labels its request metrics with the Bento's version: compare it with the one the
    environment should run (after the requests above, so the series exist)."""
    for route, examples in routes.items():
        if examples:
            client.post(route, json=examples[0])
    served = set(re.findall(r'service_version="([^"]*)"', client.get("/metrics").text))
    expected = os.environ.get("SHIPYARD_EXPECTED_BENTO", "")
    if not expected:
        pytest.fail("SHIPYARD_EXPECTED_BENTO is not set: `shipyard verify` sets it to the Bento the environment runs")
    version = expected.split(":", 1)[-1]
    assert version in served, f"serving Bento version(s) {sorted(served) or 'unknown'}, the environment should run {expected}"
