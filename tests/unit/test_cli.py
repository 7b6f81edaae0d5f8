"""The CLI's contract: --help everywhere, exit 2 for bad input, 1 for a failed step."""

from __future__ import annotations

import pytest

from shipyard.cli import build_parser, main


@pytest.mark.parametrize("verb", ["train", "build", "deploy", "status", "stop", "diff", "image", "verify", "promote", "rollback", "history", "batch"])
def test_every_verb_explains_itself(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage: shipyard " + verb in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--rows", "10"], "must be >= 2000"),
        (["train", "--seed", "x"], "must be an integer"),
        (["deploy"], "the following arguments are required: env"),
        (["deploy", "staging", "--target", "mars"], "invalid choice: 'mars'"),
        (["launch"], "invalid choice: 'launch'"),
        (["deploy", "staging", "--timeout", "0"], "must be > 0"),
        (["diff", "staging"], "the following arguments are required: right"),
    ],
)
def test_bad_usage_exits_2_naming_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_environment_exits_2(capsys):
    assert main(["deploy", "qa"]) == 2
    assert "unknown environment 'qa'" in capsys.readouterr().err


def test_kubernetes_only_options_are_refused_for_the_local_target(capsys):
    assert main(["deploy", "staging", "--target", "local", "--dry-run"]) == 2
    assert "apply to the kubernetes target" in capsys.readouterr().err


def test_missing_bento_exits_1_with_the_fix(capsys):
    assert main(["deploy", "staging", "--bento", "fraud_scorer:doesnotexist"]) == 1
    assert "run `shipyard build` first" in capsys.readouterr().err


def test_parser_lists_all_verbs():
    help_text = build_parser().format_help()
    for verb in ("train", "build", "deploy", "status", "stop"):
        assert verb in help_text
