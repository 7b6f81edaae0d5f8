"""Smoke: the service started and answers as a Bento must, whatever its model.

Health (readiness and liveness), metrics, the OpenAPI document, every API answering one valid
request of its own media type (from the project's samples, else the document's examples, else
generated; a file field gets a file of the type it declares), a streamed answer read to its end,
every task API's job submitted, followed to its end and its result fetched, every API refusing
one invalid body with a 4xx, and the served Bento being the one the environment should run
(BentoML's own metrics carry the Bento version).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from shipyard.harness.staged.plugin import setting
from shipyard.harness.staged.traffic import (TASK_SUFFIXES, TrafficError, api_routes, encode, examples_for,
                                             load_samples, task_routes)

TASK_WAIT_S = float(setting("task_wait_s", "300"))  # a hang bound: how long a task's job may run

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


def _post(client, document, route, body, path=None):
    """POSTs `body` to `route` (or to `path`, a task's submit) encoded as the route takes it; the
    answer is read to its end, a streamed one included."""
    wire = encode(document, route, body)
    return client.post(path or route, content=wire.content, headers={"content-type": wire.content_type})


SAMPLE_HINT = ("add a body to the samples file (shipyard.yaml traffic.samples: {\"/route\": [body, ...]}, a file "
               "field as \"@path/to/file\") or an example to the API's input schema")


def test_every_api_answers_a_valid_example(client, document, routes, record):
    answered, missing, refused = 0, [], []
    for route, examples in routes.items():
        if not examples:
            missing.append(route)
            continue
        try:
            resp = _post(client, document, route, examples[0])
        except TrafficError as exc:
            refused.append(str(exc))
            continue
        if resp.is_success:  # 200, or the 2xx an API sets through its bentoml.Context (202 Accepted, ...)
            answered += 1
        else:
            refused.append(f"{route}: HTTP {resp.status_code} {resp.text[:300]}")
    record("apis_answered", answered)
    assert not missing, f"no example body for {', '.join(missing)}: {SAMPLE_HINT}"
    assert not refused, f"a valid example was not answered 2xx ({SAMPLE_HINT}):\n" + "\n".join(refused)


def test_every_task_api_runs_a_job_to_its_result(client, document, routes, record):
    """A task API (`@bentoml.task`): submit, follow its status until it ends, fetch the result."""
    done, failed = 0, []
    for route in task_routes(document):
        if not routes.get(route):
            continue  # reported by the test above
        submitted = _post(client, document, route, routes[route][0], path=f"{route}/submit")
        if submitted.status_code != 200 or "task_id" not in submitted.text:
            failed.append(f"{route}/submit: HTTP {submitted.status_code} {submitted.text[:300]}")
            continue
        task_id = submitted.json()["task_id"]
        deadline, status = time.monotonic() + TASK_WAIT_S, "pending"
        while status in ("pending", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.2)
            status = client.get(f"{route}/status", params={"task_id": task_id}).json().get("status", "?")
        result = client.get(f"{route}/get", params={"task_id": task_id})
        if status != "completed" or result.status_code != 200:
            failed.append(f"{route}: task {task_id} ended {status!r} (after at most {TASK_WAIT_S:g} s); "
                          f"its result: HTTP {result.status_code} {result.text[:300]}")
        else:
            done += 1
    record("tasks_completed", done)
    assert not failed, "a task API's job did not complete:\n" + "\n".join(failed)


def test_every_api_refuses_an_invalid_body_with_a_4xx(client, document):
    wrong = []
    for route in api_routes(document):
        resp = client.post(route, content=INVALID_BODY, headers={"content-type": "application/json"})
        if not 400 <= resp.status_code < 500:
            wrong.append(f"{route}: HTTP {resp.status_code} {resp.text[:200]}")
    assert not wrong, "an invalid body was not refused with a 4xx:\n" + "\n".join(wrong)


# BentoML's own infrastructure routes: health, metrics and the documents smoke checks above.
INFRASTRUCTURE = {"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json"}


def test_what_only_some_suites_call_is_listed(document, routes, record):
    """The document's operations that smoke, load and stress do not call, and why: recorded for
    the verdict and the report (contract calls every operation the document lists)."""
    tasks = task_routes(document)
    managed = {f"{task}{suffix}" for task in tasks for suffix in TASK_SUFFIXES}
    apis = set(api_routes(document))
    notes = []
    for path, item in sorted(document.get("paths", {}).items()):
        if path in INFRASTRUCTURE or path in managed:
            continue
        for method in sorted(item):
            if method == "post" and path in apis:
                if not routes.get(path):
                    notes.append(f"POST {path}: no body to send ({SAMPLE_HINT})")
            else:
                notes.append(f"{method.upper()} {path}: not an API of the service (a mounted app's route): "
                             "only contract calls it")
    record("not_exercised", json.dumps(notes))


def test_the_served_bento_is_the_expected_one(client, document, routes):
    """BentoML labels its request metrics with the Bento's version: compare it with the one the
    environment should run (after the requests above, so the series exist)."""
    for route, examples in routes.items():
        if examples:
            try:
                _post(client, document, route, examples[0])
            except TrafficError:
                pass  # reported by the test above
    served = set(re.findall(r'service_version="([^"]*)"', client.get("/metrics").text))
    expected = os.environ.get("SHIPYARD_EXPECTED_BENTO", "")
    if not expected:
        pytest.fail("SHIPYARD_EXPECTED_BENTO is not set: `shipyard verify` sets it to the Bento the environment runs")
    version = expected.split(":", 1)[-1]
    assert version in served, f"serving Bento version(s) {sorted(served) or 'unknown'}, the environment should run {expected}"
