"""A project's own suites run by the harness like the built-in ones: a command suite passes on
exit 0 and its last output line (a JSON object) is what its gates judge."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shipyard.harness.suites import BUILTIN, run_suite, spec_for
from shipyard.project import read_project

PROJECT = """image: {repository: app}
kubernetes: {image: app, workload: app, service: app}
suites:
  perf: {runner: command, command: "python perf.py"}
  accept: {runner: pytest, path: tests/accept}
  soak: {runner: locust, path: soak.py}
"""
SOAK = """from locust import HttpUser, task


class Caller(HttpUser):
    @task
    def call(self):
        self.client.get("/")
"""
PERF = """import json, os, sys
print("warming up")
print(json.dumps({"p99_ms": 12.5, "requests": 40, "url_seen": os.environ["SHIPYARD_TARGET_URL"] != ""}))
sys.exit(int(os.environ.get("SHIPYARD_SUITE_FAIL", "0")))
"""


def _project(tmp_path: Path):
    (tmp_path / "shipyard.yaml").write_text(PROJECT)
    (tmp_path / "perf.py").write_text(PERF)
    (tmp_path / "soak.py").write_text(SOAK)
    return read_project(tmp_path / "shipyard.yaml")


def test_a_command_suite_reports_its_measurements(tmp_path):
    project = _project(tmp_path)
    result = run_suite(project, "perf", "http://127.0.0.1:9", {}, {}, tmp_path)
    assert result.status == "passed"
    assert result.metrics == {"p99_ms": 12.5, "requests": 40.0, "url_seen": 1.0}


def test_a_command_suite_that_exits_non_zero_fails_with_its_output(tmp_path):
    project = _project(tmp_path)
    result = run_suite(project, "perf", "http://127.0.0.1:9", {"fail": 1}, {}, tmp_path)
    assert result.status == "failed" and "warming up" in result.details["output"]


def test_project_paths_are_the_projects_and_built_in_suites_are_shipyards(tmp_path):
    project = _project(tmp_path)
    assert spec_for(project, "accept").path == str(tmp_path / "tests" / "accept")
    assert spec_for(project, "smoke") is BUILTIN["smoke"] and Path(BUILTIN["smoke"].path).is_dir()


def test_a_schemathesis_suite_is_the_contract_suite_with_its_own_settings(tmp_path):
    (tmp_path / "shipyard.yaml").write_text(PROJECT + "  fuzz: {runner: schemathesis}\n")
    project = read_project(tmp_path / "shipyard.yaml")
    assert spec_for(project, "fuzz") is BUILTIN["contract"]
    assert project.suite_names == ("smoke", "perf", "accept", "soak", "fuzz", "contract", "load", "stress")


def test_a_suites_notes_on_what_it_did_not_exercise_reach_the_verdict_not_its_metrics(tmp_path):
    import html
    import json

    from shipyard.evidence import Verdict
    from shipyard.harness.report import summary
    from shipyard.harness.suites import SuiteResult, _junit, _not_exercised
    from shipyard.harness.verdict import build

    junit = tmp_path / "smoke.xml"
    notes = ["GET /info/version: not an API of the service (a mounted app's route): only contract calls it"]
    junit.write_text('<testsuites><testsuite name="s"><properties>'
                     f'<property name="apis_answered" value="2"/><property name="not_exercised" value="{html.escape(json.dumps(notes))}"/>'
                     '</properties><testcase name="t"/></testsuite></testsuites>')
    assert _not_exercised(junit) == notes and _junit(junit)[3]["apis_answered"] == 2
    verdict = build("staging", "local", {}, [SuiteResult("smoke", "passed", 1.0, {}, {"not_exercised": notes})],
                    [], "now", ["smoke"])
    assert verdict["not_exercised"] == notes
    assert "not exercised by every suite:\n  GET /info/version" in summary(Verdict.model_validate(verdict))


def test_a_locust_master_whose_workers_never_connect_is_an_error_not_a_pass_with_no_requests(tmp_path, monkeypatch):
    """A real locust master told to expect a worker that never comes (in the cluster: one that could
    not reach it) gives up and writes empty statistics; the suite says what happened."""
    import shipyard.harness.suites as suites

    monkeypatch.setattr(suites, "WORKERS_WAIT_S", 2)
    result = run_suite(_project(tmp_path), "soak", "http://127.0.0.1:9", {"duration_s": 1, "users": 1}, {}, tmp_path,
                       locust_workers=1)
    assert result.status == "error", result
    assert "its 1 locust worker(s) did not connect to the master within 2 s" in result.details["output"]


def test_the_report_shows_each_failed_case_under_its_suite(tmp_path):
    from shipyard.evidence import Verdict
    from shipyard.harness.report import render_html
    from shipyard.harness.suites import SuiteResult
    from shipyard.harness.verdict import build

    failed = SuiteResult("smoke", "failed", 1.0, {"failed": 1.0},
                         {"failures": [{"test": "test_scores_a_valid_transaction", "message": "assert 500 == 200"}]})
    page = render_html(Verdict.model_validate(build("staging", "local", {"bento": "b:1"}, [failed], [], "now", ["smoke"])),
                       [failed])
    assert "<td>smoke</td><td>test_scores_a_valid_transaction</td><td>assert 500 == 200</td>" in page


def test_a_locust_suite_says_what_its_failed_requests_got(tmp_path):
    """A real locust run against a port nothing listens on: the error rate counts the failures, and
    the suite's failures name them (locust's failures CSV), most frequent first."""
    result = run_suite(_project(tmp_path), "soak", "http://127.0.0.1:9", {"duration_s": 2, "users": 1}, {}, tmp_path)
    assert result.metrics["error_rate"] == 1.0, result
    [failure] = result.details["failures"]
    assert failure["test"] == "GET /" and "ConnectionRefusedError(111, 'Connection refused')" in failure["message"]
    assert int(failure["message"].split(" x ")[0]) == result.metrics["requests"] > 0


UNPLANNED = """from locust import HttpUser, events, task

PLAN = {}


@events.test_start.add_listener
def plan(environment, **_):
    raise RuntimeError("the served document could not be read")


class Caller(HttpUser):
    @task
    def call(self):
        self.client.get(PLAN["route"])
"""


def test_a_locust_suite_whose_users_could_not_send_is_an_error_with_locusts_output(tmp_path):
    """Users that fail before their first request leave locust's statistics with no request and
    no failure: that is not a passing load suite with no data, it is an error saying why."""
    project = _project(tmp_path)
    (tmp_path / "soak.py").write_text(UNPLANNED)
    result = run_suite(project, "soak", "http://127.0.0.1:9", {"duration_s": 2, "users": 1}, {}, tmp_path)
    assert result.status == "error", result
    assert "locust sent no request in its 2 s run; its users raised " in result.details["output"]
    assert "the served document could not be read" in result.details["output"]


class _SlowDocument(BaseHTTPRequestHandler):
    """A server whose OpenAPI document takes DOCUMENT_DELAY_S, longer than the load run, as a busy
    machine's schema generation did; its one API answers at once."""

    def do_GET(self) -> None:
        time.sleep(DOCUMENT_DELAY_S)
        self._answer(json.dumps(SLOW_DOCUMENT).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer(b"{}")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


DOCUMENT_DELAY_S = 3
SLOW_DOCUMENT = {"openapi": "3.0.2", "info": {"title": "t", "version": "1"}, "paths": {"/echo": {"post": {
    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}, "example": {"x": 1}}}},
    "responses": {"200": {"description": "ok"}}}}}}


def test_the_load_suite_reads_the_document_before_its_run_time_starts(tmp_path):
    """The built-in load suite against a server whose document takes longer than the run: the run
    still sends for its whole duration (locust's clock starts beside test_start; the plan is made
    at init, before it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowDocument)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_suite(_project(tmp_path), "load", f"http://127.0.0.1:{server.server_port}",
                           {"duration_s": 2, "users": 1, "spawn_rate": 1, "rps_per_user": 10}, {}, tmp_path)
    finally:
        server.shutdown()
    assert result.status == "passed", result
    assert result.metrics["requests"] >= 5 and result.metrics["error_rate"] == 0, result.metrics
