"""The CLI's contract: --help everywhere, exit 2 for bad input, 1 for a failed step; the project's
hooks are verbs that take their own arguments."""

from __future__ import annotations

import pytest

from shipyard.cli import main
from tests.conftest import run_cli


@pytest.mark.parametrize("verb", ["build", "deploy", "status", "stop", "diff", "image", "verify", "promote",
                                  "rollback", "history", "batch", "init"])
def test_every_verb_explains_itself(verb, capsys):
    assert main([verb, "--help"]) == 0
    assert "Usage: shipyard " + verb in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["deploy"], "Missing argument 'ENV'"),
        (["deploy", "staging", "--target", "mars"], "'mars' is not one of 'local', 'kubernetes'"),
        (["launch"], "No such command 'launch'"),
        (["deploy", "staging", "--timeout", "0"], "--timeout': 0.0 is not in the range x>0"),
        (["diff", "staging"], "Missing argument 'RIGHT'"),
        (["rollback", "production", "--to", "-1"], "-1 is not in the range x>=0"),
        (["verify", "staging", "--suite", "smoek"], "unknown suite smoek"),
    ],
)
def test_bad_usage_exits_2_naming_the_problem(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_environment_exits_2(capsys):
    assert main(["deploy", "qa"]) == 2
    assert "unknown environment 'qa'" in capsys.readouterr().err


def test_kubernetes_only_options_are_refused_for_the_local_target(capsys):
    assert main(["deploy", "staging", "--target", "local", "--dry-run"]) == 2
    assert "apply to the kubernetes target" in capsys.readouterr().err


def test_a_bento_is_refused_for_the_kubernetes_target_which_deploys_images(capsys):
    assert main(["deploy", "staging", "--target", "kubernetes", "--bento", "fraud_scorer:latest"]) == 2
    assert "--bento applies to the local target" in capsys.readouterr().err


def test_missing_bento_exits_1_with_the_fix(capsys):
    assert main(["deploy", "staging", "--bento", "fraud_scorer:doesnotexist"]) == 1
    assert "run `shipyard build` first" in capsys.readouterr().err


def test_help_lists_the_verbs_and_the_projects_hooks(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("init", "build", "deploy", "verify", "promote", "status", "stop"):
        assert verb in out
    assert "the project's hook: python -m service.model" in out  # shipyard.yaml hooks.train


def test_a_hook_gets_its_own_arguments_and_exit_code():
    """`shipyard train` is the project's entry point: its argument errors are its own (exit 2)."""
    bad = run_cli("train", "--rows", "10")
    assert bad.returncode == 2 and "must be >= 2000" in bad.stderr
    shown = run_cli("train", "--help")
    assert shown.returncode == 0 and "usage: shipyard train" in shown.stdout


def test_outside_a_project_every_project_verb_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHIPYARD_PROJECT", raising=False)
    result = run_cli("status", cwd=tmp_path)
    assert result.returncode == 2 and "no shipyard.yaml" in result.stderr and "shipyard init" in result.stderr



def test_history_tells_a_step_without_enough_traffic_from_a_failed_gate():
    from shipyard.cli import _steps

    gates = [{"metric": "requests", "passed": False}, {"metric": "error_rate", "passed": False}]
    doc = {"canary": {"steps": [{"share_asked_pct": 25, "passed": True, "gates": []},
                                {"share_asked_pct": 50, "passed": False, "gates": gates,
                                 "not_enough_traffic": "not enough traffic: 3 of 50 requests in 80 s"}]}}
    assert _steps(doc["canary"]) == "25%:ok 50%:no-traffic"
    doc["canary"]["steps"][1].pop("not_enough_traffic")
    assert _steps(doc["canary"]) == "25%:ok 50%:requests,error_rate"
