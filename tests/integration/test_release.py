"""Promotion, post-deploy checks, rollback and history on the local target, with real servers,
real verdicts and real locks."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.server

STAGE = """name: stage
target: local
local: {{port: {port}}}
data_sample: {sample}
promotion:
  to: prod
  requires_approval: {approval}
  max_verdict_age_h: {max_age}
  post_deploy_suites: [smoke, acceptance]
gates:
  smoke: {{failed: {{max: 0}}, passed: {{min: 5}}}}
  acceptance: {{roc_auc: {{min: 0.5}}}}
"""
PROD = """name: prod
target: local
local: {{port: {port}}}
data_sample: {sample}
gates:
  smoke: {{failed: {{max: 0}}, passed: {{min: 5}}}}
  acceptance: {{roc_auc: {{min: {prod_auc}}}}}
"""


@pytest.fixture(scope="module")
def sample(built_bento, state_dir, tmp_path_factory) -> Path:
    """The representative sample of model A's data, copied before model B's training rewrites it."""
    copy = tmp_path_factory.mktemp("sample") / "sample.csv"
    shutil.copy(state_dir / "data" / "sample.csv", copy)
    return copy


@pytest.fixture
def pair(tmp_path, sample, built_bento):
    """A stage -> prod pair of local environments; returns a writer and the CLI environment."""
    ports = {"stage": free_port(), "prod": free_port()}
    # A state folder per test: releases, verdicts and locks of one test never meet another's
    # (the model and Bento stores stay the session's: BENTOML_HOME is set).
    env = {"SHIPYARD_ENVIRONMENTS": str(tmp_path), "SHIPYARD_STATE": str(tmp_path / "state")}

    def write(approval="false", max_age=24, prod_auc=0.5):
        for name, text in (("stage", STAGE), ("prod", PROD)):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "environment.yaml").write_text(text.format(
                port=ports[name], sample=sample, approval=approval, max_age=max_age, prod_auc=prod_auc))

    write()
    yield write, env
    for name in ("stage", "prod"):
        run_cli("stop", name, env=env)


def deploy(name, bento, env):
    result = run_cli("deploy", name, "--bento", bento, env=env)
    assert result.returncode == 0, result.stderr


def verify(name, env, *suites):
    args = [a for s in (suites or ("smoke", "acceptance")) for a in ("--suite", s)]
    return run_cli("verify", name, *args, env=env, timeout=600)


def history(name, env) -> list[dict]:
    result = run_cli("history", name, "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def serving(name, env) -> str:
    return json.loads(run_cli("status", name, "-o", "json", env=env).stdout)[0]["bento"]


@pytest.fixture(scope="module")
def weaker_bento(built_bento, sample, cli_env):
    """Bento B: the same service with a model trained on far less data (a worse ROC AUC)."""
    assert run_cli("train", "--rows", "2000", "--seed", "3", env=cli_env).returncode == 0
    result = run_cli("build", env=cli_env)
    assert result.returncode == 0
    tag = result.stdout.split()[1]
    assert tag != built_bento
    return tag


def test_happy_path_promotes_the_verified_bento_and_records_it(pair, built_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env, "smoke", "acceptance").returncode == 0
    plan = run_cli("promote", "stage", "--dry-run", env=env)
    assert plan.returncode == 0 and built_bento in plan.stdout and re.search(r"smoke\.passed=[1-9]", plan.stdout)
    assert serving("prod", env) == ""  # the dry run changed nothing
    result = run_cli("promote", "stage", env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert serving("prod", env) == built_bento
    [release] = history("prod", env)
    assert release["kind"] == "promote" and release["subject"] == built_bento and release["outcome"] == "succeeded"
    verdict_file = Path(release["verdict"]["record"])
    assert release["verdict"]["passed"] and verdict_file.suffix == ".json" and verdict_file.is_file()
    assert json.loads(verdict_file.read_text())["subject"]["bento"] == built_bento
    assert release["model_version"].startswith("fraud_detector:") and release["training_data_hash"].startswith("sha256:")
    table = run_cli("history", "prod", env=env).stdout
    assert table.splitlines()[0].split()[:3] == ["SEQ", "KIND", "SUBJECT"]


def test_refused_without_a_verdict(pair, built_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and "no verdict for stage: run `shipyard verify stage`" in result.stderr
    assert serving("prod", env) == ""


def test_a_canary_is_refused_on_the_local_target_naming_both_fixes(pair, built_bento, tmp_path):
    write, env = pair
    stage = tmp_path / "stage" / "environment.yaml"
    stage.write_text(stage.read_text().replace(
        "  post_deploy_suites: [smoke, acceptance]\n",
        "  post_deploy_suites: [smoke, acceptance]\n  strategy: canary\n"
        "  canary: {steps: [50], gates: {requests: {min: 10}}}\n"))
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1
    assert "a canary needs the kubernetes target" in result.stderr
    assert "--target kubernetes" in result.stderr and "--strategy replace" in result.stderr
    assert serving("prod", env) == ""


def test_traffic_sends_the_samples_at_a_fixed_rate_and_accounts_for_every_request(pair, built_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    result = run_cli("traffic", "stage", "--rps", "20", "--duration", "3", "-o", "json", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["planned"] == summary["sent"] == 60 and summary["statuses"] == {"200": 60}
    assert summary["failed"] == 0 and summary["p99_ms"] is not None
    bad = run_cli("traffic", "stage", "--rps", "1000", env=env)
    assert bad.returncode == 2 and "--rps" in bad.stderr


def test_refused_when_the_verdict_failed(pair, built_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    write(prod_auc=0.5)
    (Path(env["SHIPYARD_ENVIRONMENTS"]) / "stage" / "environment.yaml").write_text(
        (Path(env["SHIPYARD_ENVIRONMENTS"]) / "stage" / "environment.yaml").read_text()
        .replace("passed: {min: 5}", "passed: {min: 50}"))
    assert verify("stage", env).returncode == 1
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and re.search(r"failed: smoke\.passed \(\d+ < min 50\)", result.stderr)
    assert serving("prod", env) == ""


def test_refused_when_the_verdict_skipped_a_gated_suite(pair, built_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env, "smoke").returncode == 0
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and "did not run acceptance, which stage gates" in result.stderr
    assert serving("prod", env) == ""


def test_refused_when_stage_changed_since_it_was_verified(pair, built_bento, weaker_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    deploy("stage", weaker_bento, env)
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and "changed since it was verified" in result.stderr
    assert serving("prod", env) == ""


def test_refused_when_the_verdict_is_too_old(pair, built_bento):
    write, env = pair
    write(max_age=0.0002)  # under a second
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    time.sleep(1.5)
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and "h old (promotion.max_verdict_age_h is 0.0002)" in result.stderr


def test_refused_without_approval_when_required(pair, built_bento):
    write, env = pair
    write(approval="true")
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    result = run_cli("promote", "stage", env=env)
    assert result.returncode == 1 and "requires approval" in result.stderr and "--approve" in result.stderr
    approved = run_cli("promote", "stage", "--approve", env=env, timeout=600)
    assert approved.returncode == 0 and history("prod", env)[-1]["approved"] is True


def test_refused_while_another_promotion_holds_the_lock(pair, built_bento):
    from shipyard.config import load_environment
    from shipyard.targets import LocalTarget

    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_ENVIRONMENTS", env["SHIPYARD_ENVIRONMENTS"])
        patch.setenv("SHIPYARD_STATE", env["SHIPYARD_STATE"])
        prod = LocalTarget(load_environment("prod"))
        assert prod.lock.acquire("promotion", "alice@release-desk:4242", 60) is None
        try:
            result = run_cli("promote", "stage", env=env)
            assert result.returncode == 1 and "held by alice@release-desk:4242" in result.stderr
            assert serving("prod", env) == ""
        finally:
            prod.lock.release("promotion", "alice@release-desk:4242")
    assert run_cli("promote", "stage", env=env, timeout=600).returncode == 0


def test_failed_post_deploy_check_rolls_back_by_itself(pair, built_bento, weaker_bento):
    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    assert run_cli("promote", "stage", env=env, timeout=600).returncode == 0   # release 1: A
    deploy("stage", weaker_bento, env)
    assert verify("stage", env, "smoke", "acceptance").returncode == 0        # B passes stage's lenient gates
    write(prod_auc=0.9)                                                       # prod demands more
    result = run_cli("promote", "stage", env=env, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert serving("prod", env) == built_bento                                # A serves again
    first, failed, back = history("prod", env)
    assert failed["subject"] == weaker_bento and failed["outcome"] == "rolled-back"
    assert "acceptance.roc_auc" in failed["note"]
    assert back["kind"] == "auto-rollback" and back["subject"] == built_bento and back["outcome"] == "succeeded"
    assert back["post_deploy"][0]["passed"]


def test_rollback_by_hand_to_a_named_release(pair, built_bento, weaker_bento):
    write, env = pair
    for bento in (built_bento, weaker_bento):
        deploy("stage", bento, env)
        assert verify("stage", env).returncode == 0
        assert run_cli("promote", "stage", env=env, timeout=600).returncode == 0
    assert serving("prod", env) == weaker_bento
    result = run_cli("rollback", "prod", "--to", "1", env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert serving("prod", env) == built_bento
    last = history("prod", env)[-1]
    assert last["kind"] == "rollback" and last["note"] == "to release 1" and last["previous"] == weaker_bento
    assert run_cli("rollback", "prod", "--to", "99", env=env).returncode == 1


def test_two_concurrent_promotions_exactly_one_proceeds(pair, built_bento):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    write, env = pair
    deploy("stage", built_bento, env)
    assert verify("stage", env).returncode == 0
    import os

    procs = [subprocess.Popen([sys.executable, "-m", "shipyard.cli", "promote", "stage"], cwd=PROJECT_ROOT,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "another promotion to prod is in progress, held by" in refused
    assert len(history("prod", env)) == 1
