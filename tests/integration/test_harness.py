"""`shipyard verify` against real served services: a healthy one passes, a broken one fails the
right suite and the right gate with the measured value in the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, free_port, run_cli
from tests.environments import TEST_STRESS, behaviour_environment

pytestmark = pytest.mark.server

# The suites and gates of a demanding staging, made a test environment's (tests/environments.py):
# every behaviour gate as written, every timing gate bounded only to catch a hang.
SETTINGS = yaml.safe_load("""
suites:
  contract: {examples: 100, seed: 7}
  load: {users: 8, spawn_rate: 8, duration_s: 8}
  stress: {start_rps: 50, step_factor: 3, step_s: 3, overload_s: 4, recovery_s: 10, p95_ms_limit: 400}
gates:
  smoke: {failed: {max: 0}, passed: {min: 5}}
  integration: {failed: {max: 0}}
  contract: {server_errors: {max: 0}, contract_failures: {max: 0}, lenient_inputs: {max: 0}, cases: {min: 100}}
  acceptance: {scenario_failures: {max: 0}, roc_auc: {min: 0.85}}
  load: {error_rate: {max: 0.01}, p95_ms: {max: 250}, rps: {min: 5}}
  stress: {server_error_rate: {max: 0.01}, answered_p99_ms: {max: 500}, rejection_p99_ms: {max: 500}, recovery_s: {max: 10}}
""")


def _environment(envs: Path, name: str, state_dir: Path, gates: dict | None = None) -> dict[str, str]:
    """A local test environment; `gates` adds or replaces gates after the timing ones were loosened."""
    settings = behaviour_environment({"name": name, "target": "local", "local": {"port": free_port()},
                                      "data_sample": str(state_dir / "data" / "sample.csv"), **SETTINGS})
    for suite, metrics in (gates or {}).items():
        settings["gates"][suite] = {**settings["gates"].get(suite, {}), **metrics}
    (envs / name).mkdir(parents=True, exist_ok=True)
    (envs / name / "environment.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return {"SHIPYARD_ENVIRONMENTS": str(envs)}


def _verdict(result) -> dict:
    path = next(line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("verdict:"))
    return json.loads(Path(path).read_text())


def _gate(verdict: dict, suite: str, metric: str) -> dict:
    return next(g for g in verdict["gates"] if g["suite"] == suite and g["metric"] == metric)


@pytest.fixture(scope="module")
def healthy(built_bento, environments, state_dir):
    env = _environment(environments, "healthy", state_dir)
    assert run_cli("deploy", "healthy", "--bento", built_bento, env=env).returncode == 0
    yield env
    run_cli("stop", "healthy", env=env)


def test_healthy_service_passes_every_gate(healthy, built_bento):
    result = run_cli("verify", "healthy", env=healthy, timeout=600)
    verdict = _verdict(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict["passed"] and verdict["subject"]["bento"] == built_bento
    assert verdict["subject"]["model_version"].startswith("fraud_detector:")
    assert verdict["subject"]["training_data_hash"].startswith("sha256:")
    assert [s["name"] for s in verdict["suites"]] == ["smoke", "integration", "acceptance", "contract", "load", "stress"]
    for gate in verdict["gates"]:
        assert gate["passed"] and gate["measured"] is not None, gate
    assert _gate(verdict, "contract", "cases")["measured"] >= 100
    html = Path(result.stdout.split("report:")[1].strip()).read_text()
    assert "PASSED" in html and "<svg" in html and "latency over time" in html
    assert "stress: requests per second offered, answered and refused" in html
    stress = next(s for s in verdict["suites"] if s["name"] == "stress")["metrics"]
    # Open loop past the saturation it measured: what the generator sent (the test environment's
    # factor when it kept its schedule, less when the machine's cores starved it), more than the
    # service could answer.
    assert stress["overload_offered_rps"] > stress["saturation_rps"] > 0


def test_a_stress_run_that_cannot_saturate_the_service_is_inconclusive_not_a_pass(built_bento, environments, state_dir):
    """A ramp capped at 40 requests/s (suites.stress.peak_rps), which the service answers in full:
    the run cannot say what overload does, so every stress gate has no data and says why, and the
    verdict fails rather than passing on a load the service took in its stride."""
    env = _environment(environments, "capped", state_dir)
    path = environments / "capped" / "environment.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["suites"]["stress"] = {**TEST_STRESS, "start_rps": 20, "peak_rps": 40, "step_s": 6, "overload_s": 4}
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert run_cli("deploy", "capped", "--bento", built_bento, env=env).returncode == 0
    try:
        result = run_cli("verify", "capped", "--suite", "smoke", "--suite", "stress", env=env, timeout=600)
    finally:
        run_cli("stop", "capped", env=env)
    verdict = _verdict(result)
    assert result.returncode == 1 and not verdict["passed"], result.stdout + result.stderr
    assert "stress: inconclusive: the service was never saturated" in result.stderr
    gates = [g for g in verdict["gates"] if g["suite"] == "stress"]
    assert gates and all(not g["passed"] and g["measured"] is None for g in gates)
    for gate in gates:
        assert gate["reason"].startswith("no data: the service was never saturated: it answered"), gate
        assert "requests/s at the ramp's peak (raise suites.stress.peak_rps)" in gate["reason"]
    [stress] = [s for s in verdict["suites"] if s["name"] == "stress"]
    assert stress["inconclusive"] == gates[0]["reason"].removeprefix("no data: ")


def _serve_broken(name: str, faults: dict[str, str], environments: Path, state_dir: Path, model: str,
                  gates: dict | None = None):
    """The broken service served by the local target, recorded as running the genuine model."""
    from shipyard.config import load_environment
    from shipyard.targets import LocalTarget

    env = _environment(environments, name, state_dir, gates)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**faults, "PYTHONPATH": str(PROJECT_ROOT), **env}.items():
            patch.setenv(key, value)
        target = LocalTarget(load_environment(name))
        target.deploy("tests.integration.broken_service:Broken", model)
    return env, target


@pytest.fixture(scope="module")
def broken(built_bento, trained_model, environments, state_dir):
    env, target = _serve_broken("broken", {"BROKEN_5XX_HOUR": "12", "BROKEN_ACCEPT_HOUR": "1",
                                           "BROKEN_MODEL_VERSION": "fraud_detector:impostor"},
                                environments, state_dir, trained_model)
    yield env
    target.stop()


@pytest.fixture(scope="module")
def impostor(built_bento, trained_model, environments, state_dir):
    env, target = _serve_broken("impostor", {"BROKEN_MODEL_VERSION": "fraud_detector:impostor"},
                                environments, state_dir, trained_model)
    yield env
    target.stop()


def test_a_service_answering_with_another_model_fails_the_projects_integration_suite(impostor):
    result = run_cli("verify", "impostor", "--suite", "integration", env=impostor, timeout=600)
    verdict = _verdict(result)
    assert result.returncode == 1 and not verdict["passed"]
    said = json.dumps(verdict["suites"][0]["failures"])
    assert "test_model_version_is_the_expected_one" in said and "fraud_detector:impostor" in said


@pytest.fixture(scope="module")
def slow(built_bento, trained_model, environments, state_dir):
    # Every answer takes at least 400 ms on any machine, so a 250 ms bound fails for certain.
    env, target = _serve_broken("slow", {"BROKEN_SLOW_MS": "400"}, environments, state_dir, trained_model,
                                gates={"load": {"p95_ms": {"max": 250}}})
    yield env
    target.stop()


def test_a_broken_service_fails_smoke_and_stops_the_run(broken):
    """Its valid examples get 5xx, and what it serves is not the Bento the environment should run
    (a service from source): smoke says both, and nothing else runs."""
    result = run_cli("verify", "broken", env=broken, timeout=600)
    verdict = _verdict(result)
    assert result.returncode == 1 and not verdict["passed"]
    assert [s["name"] for s in verdict["suites"]] == ["smoke"]
    assert _gate(verdict, "smoke", "failed")["measured"] >= 1 and not _gate(verdict, "smoke", "failed")["passed"]
    said = json.dumps(verdict["suites"][0]["failures"])
    assert "a valid example was not answered 2xx" in said and "HTTP 500" in said
    assert "the environment should run tests.integration.broken_service:Broken" in said
    later = _gate(verdict, "load", "p95_ms")
    assert not later["passed"] and later["reason"] == "no data: suite load did not run"


def test_server_errors_and_accepted_invalid_input_fail_the_contract(broken):
    result = run_cli("verify", "broken", "--suite", "contract", env=broken, timeout=600)
    verdict = _verdict(result)
    assert result.returncode == 1
    errors, accepted = _gate(verdict, "contract", "server_errors"), _gate(verdict, "contract", "lenient_inputs")
    assert not errors["passed"] and errors["measured"] > 0
    assert not accepted["passed"] and accepted["measured"] > 0  # an hour off the schema, answered


@pytest.fixture(scope="module")
def offschema(built_bento, trained_model, environments, state_dir):
    env, target = _serve_broken("offschema", {"BROKEN_418_HOUR": "20", "BROKEN_OFFSCHEMA": "1"},
                                environments, state_dir, trained_model)
    yield env
    target.stop()


def test_answers_off_the_document_fail_the_contract_naming_the_check_and_the_case(offschema):
    """An undocumented status and a body off its schema: the verdict names each check and gives
    the curl command that reproduces it."""
    result = run_cli("verify", "offschema", "--suite", "contract", env=offschema, timeout=900)
    verdict = _verdict(result)
    assert result.returncode == 1 and not verdict["passed"]
    failures = _gate(verdict, "contract", "contract_failures")
    assert not failures["passed"] and failures["measured"] > 0
    said = json.dumps(verdict["suites"][0]["failures"])
    assert "Undocumented status code" in said and "Response violates schema" in said, said[:3000]
    assert "curl -X POST" in said and "/score" in said


def test_slow_endpoint_fails_the_latency_gate_with_its_measured_value(slow):
    result = run_cli("verify", "slow", "--suite", "load", env=slow, timeout=600)
    verdict = _verdict(result)
    p95 = _gate(verdict, "load", "p95_ms")
    assert result.returncode == 1 and not p95["passed"] and p95["measured"] >= 400
    assert p95["reason"] == f"{p95['measured']:g} > max 250"
    assert "p95_ms" in result.stdout and "FAIL" in result.stdout


def test_unknown_suite_and_malformed_environment_exit_2(healthy, environments):
    result = run_cli("verify", "healthy", "--suite", "soak", env=healthy)
    assert result.returncode == 2 and "unknown suite soak" in result.stderr
    (environments / "badgates").mkdir(exist_ok=True)
    (environments / "badgates" / "environment.yaml").write_text("name: badgates\ngates: {load: {p95_ms: {maximum: 5}}}\n")
    result = run_cli("verify", "badgates", env=healthy)
    assert result.returncode == 2 and "gates.load.p95_ms.maximum" in result.stderr
