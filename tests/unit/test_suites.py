"""A project's own suites run by the harness like the built-in ones: a command suite passes on
exit 0 and its last output line (a JSON object) is what its gates judge."""

from __future__ import annotations

from pathlib import Path

from shipyard.harness.suites import BUILTIN, run_suite, spec_for
from shipyard.project import read_project

PROJECT = """image: {repository: app}
kubernetes: {image: app, workload: app, service: app}
suites:
  perf: {runner: command, command: "python perf.py"}
  accept: {runner: pytest, path: tests/accept}
"""
PERF = """import json, os, sys
print("warming up")
print(json.dumps({"p99_ms": 12.5, "requests": 40, "url_seen": os.environ["SHIPYARD_TARGET_URL"] != ""}))
sys.exit(int(os.environ.get("SHIPYARD_SUITE_FAIL", "0")))
"""


def _project(tmp_path: Path):
    (tmp_path / "shipyard.yaml").write_text(PROJECT)
    (tmp_path / "perf.py").write_text(PERF)
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
    assert project.suite_names == ("smoke", "perf", "accept", "fuzz", "contract", "load", "stress")


def test_a_suites_notes_on_what_it_did_not_exercise_reach_the_verdict_not_its_metrics(tmp_path):
    import html
    import json

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
    assert "not exercised by every suite:\n  GET /info/version" in summary(verdict)
