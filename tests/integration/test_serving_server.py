"""shipyard's server (shipyard_serving/server.py) against `bentoml serve`, both real processes on
loopback: the same Bento answers the same on both, a project's own kinds of API (keyword inputs, a
sync API, hooks, readiness) are served as BentoML serves them, and what the server cannot serve the
same way is handed over to `bentoml serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from shipyard.targets import wait_until_ready
from tests.conftest import PROJECT_ROOT, VALID_TRANSACTION, free_port
from tests.integration.test_served_bento import INVALID

pytestmark = pytest.mark.server
SHIPYARD_SERVER = [sys.executable, "-m", "shipyard_serving.server"]
BENTOML_SERVE = [sys.executable, "-m", "bentoml", "serve"]


@contextlib.contextmanager
def serving(command: list[str], target: str, log: Path) -> Iterator[httpx.Client]:
    """`command target` on a free loopback port until the block ends (SIGTERM to its group)."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, target, "--host", "127.0.0.1", "--port", str(port)], cwd=PROJECT_ROOT,
                                env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # The bound catches a hang; it is not a performance assertion.
        if not wait_until_ready(url, 90, alive=lambda: proc.poll() is None):
            pytest.fail(f"{' '.join(command[2:])} {target} never became ready:\n{log.read_text()[-3000:]}")
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _answer(resp: httpx.Response) -> tuple[int, object]:
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


def _requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Every request the served-Bento tests send, valid and invalid, as raw bodies."""
    json_type = {"content-type": "application/json"}
    out = [("valid", "/score", json.dumps(VALID_TRANSACTION).encode(), json_type),
           ("valid list", "/score_batch", json.dumps([VALID_TRANSACTION] * 3).encode(), json_type)]
    for name, path, body, headers, *_ in INVALID:
        raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        out.append((name, path, raw, json_type if headers is None else headers))
    return out


def test_the_bento_answers_alike_on_both_servers(built_bento, state_dir):
    """Status and body of every valid and invalid request, and the published document, are the same."""
    answers: dict[str, list] = {}
    for label, command in (("shipyard", SHIPYARD_SERVER), ("bentoml", BENTOML_SERVE)):
        with serving(command, built_bento, state_dir / f"parity-{label}.log") as client:
            got = [_answer(client.post(path, content=raw, headers=headers))
                   for _, path, raw, headers in _requests()]
            got.append(_answer(client.get("/docs.json")))
            got.append(client.get("/readyz").status_code)
            answers[label] = got
    names = [name for name, *_ in _requests()] + ["/docs.json", "/readyz"]
    differ = [name for name, a, b in zip(names, answers["shipyard"], answers["bentoml"]) if a != b]
    assert not differ, f"answered differently by the two servers: {differ}"
    assert answers["shipyard"][0][0] == 200 and answers["shipyard"][2][0] == 400


def test_request_metrics_keep_bentoml_names(built_bento, state_dir):
    with serving(SHIPYARD_SERVER, built_bento, state_dir / "metrics.log") as client:
        client.post("/score", json=VALID_TRANSACTION)
        client.post("/score", json={**VALID_TRANSACTION, "amount": -1})
        text = client.get("/metrics").text
    assert 'bentoml_service_request_total{endpoint="/score",http_response_code="200"' in text
    assert 'bentoml_service_request_total{endpoint="/score",http_response_code="400"' in text
    assert "bentoml_service_request_duration_seconds_bucket" in text
    assert 'le="0.0015"' in text  # the service's own buckets (its `metrics` config), not BentoML's default
    assert 'shipyard_decisions_total{decision="legitimate"} 1.0' in text


@pytest.fixture(scope="module")
def greeter(state_dir) -> Iterator[httpx.Client]:
    with serving(SHIPYARD_SERVER, "tests.integration.plain_services:Greeter", state_dir / "greeter.log") as client:
        yield client
    assert "bentoml serve" not in (state_dir / "greeter.log").read_text()


def test_keyword_inputs_and_a_sync_api_in_a_thread(greeter):
    before = greeter.post("/count", json={}).json()
    resp = greeter.post("/greet", json={"name": "ada", "times": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"text": "hello ada hello ada", "in_thread": True}
    assert greeter.post("/count", json={}).json() == before + 1


def test_sync_apis_run_one_at_a_time_as_under_bentoml(greeter):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: greeter.post("/busy", json={}), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert max(a.json() for a in answers) == 1  # the service's `threads` is 1: never two at once


def test_a_root_input_that_is_not_json_is_a_400(greeter):
    assert greeter.post("/total", json=[1, 2, 3]).json() == 6
    bad = greeter.post("/total", content=b"[1, 2", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["detail"][0]["type"] == "json_invalid", bad.text


def test_bentomls_own_clients_find_the_schema(greeter):
    schema = greeter.get("/schema.json")
    assert schema.status_code == 200 and schema.json()["name"] == "greeter"
    assert {r["route"] for r in schema.json()["routes"]} >= {"/greet", "/total", "/busy"}


def test_a_project_without_the_serving_layer_gets_bentoml_error_bodies(greeter):
    resp = greeter.post("/greet", json={"name": "", "times": 9})
    assert resp.status_code == 400
    assert {tuple(e["loc"]) for e in resp.json()["detail"]} == {("name",), ("times",)}
    failed = greeter.post("/fail", json={"why": "on purpose"})
    assert failed.status_code == 500
    assert "on purpose" not in failed.text  # the server log has it, the caller does not


def test_startup_hooks_run_before_ready_and_unknown_paths_are_404(greeter):
    assert greeter.get("/readyz").status_code == 200
    assert greeter.get("/livez").status_code == 200
    assert greeter.get("/nowhere").status_code == 404
    assert greeter.get("/greet").status_code == 405
    assert greeter.request("TRACE", "/livez").status_code == 405  # a known path, an undeclared method


def test_what_it_cannot_serve_goes_to_bentoml_serve(state_dir):
    log = state_dir / "doubler.log"
    with serving(SHIPYARD_SERVER, "tests.integration.plain_services:Doubler", log) as client:
        resp = client.post("/double", json={"numbers": [1, 2, 3]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [2, 4, 6]
    assert "serving with `bentoml serve`: API double uses adaptive batching" in log.read_text()


def test_the_traffic_timeout_answers_504_in_the_error_contract(state_dir):
    with serving(SHIPYARD_SERVER, "tests.integration.plain_services:Sleeper", state_dir / "sleeper.log") as client:
        late = client.post("/nap", json={"seconds": 3})  # the service's traffic timeout is 1 s
        on_time = client.post("/nap", json={"seconds": 0})
    assert late.status_code == 504 and late.json()["error"] == "timeout", late.text
    assert on_time.status_code == 200 and on_time.text == "rested"
