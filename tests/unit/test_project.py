"""shipyard.yaml: found by walking up, validated with errors naming the key, and what it derives
from the project's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.bento import build_context
from shipyard.project import ProjectError, command_line, find_project_file, read_project

MINIMAL = ("image: {repository: ticket-router}\n"
           "kubernetes: {image: ticket-router, workload: ticket-router, service: ticket-router}\n")


def _project(tmp_path: Path, text: str = MINIMAL) -> Path:
    (tmp_path / "shipyard.yaml").write_text(text)
    return tmp_path / "shipyard.yaml"


def test_found_from_any_folder_below_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SHIPYARD_PROJECT", raising=False)
    path = _project(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_file(deep) == path


def test_outside_a_project_the_error_names_shipyard_init(tmp_path, monkeypatch):
    monkeypatch.delenv("SHIPYARD_PROJECT", raising=False)
    with pytest.raises(ProjectError, match="run `shipyard init`"):
        find_project_file(tmp_path)


@pytest.mark.parametrize("text,says", [
    ("kubernetes: {image: x, workload: x, service: x}\n", "image: Field required"),
    (MINIMAL + "hooks: {Train: python -m x}\n", "hooks.Train.[key]: String should match pattern"),
    (MINIMAL + "suites: {smoke: {runner: pytest, path: t}}\n", "smoke are built-in suites"),
    (MINIMAL + "suites: {perf: {runner: command}}\n", "runner command needs `command`"),
    (MINIMAL + "suites: {perf: {runner: jmeter, path: x}}\n", "suites.perf.runner"),
    (MINIMAL + "colour: blue\n", "colour: Extra inputs are not permitted"),
    (MINIMAL.replace("ticket-router}", "ticket-router, serving_lock: s.txt}", 1), "serving_lock needs base: debian"),
    ("- a list\n", "must be a mapping"),
])
def test_errors_name_the_key_and_the_rule(tmp_path, text, says):
    with pytest.raises(ProjectError) as info:
        read_project(_project(tmp_path, text))
    assert says in str(info.value) and "shipyard.yaml" in str(info.value)


def test_the_suites_run_smoke_first_then_the_projects_then_contract_load_stress(tmp_path):
    project = read_project(_project(tmp_path, MINIMAL + "suites: {accept: {runner: pytest, path: t}, "
                                                        "perf: {runner: command, command: ./perf.sh --fast}}\n"))
    assert project.suite_names == ("smoke", "accept", "perf", "contract", "load", "stress")
    assert project.suites["perf"].command == ["./perf.sh", "--fast"]


def test_a_python_hook_runs_in_shipyards_own_interpreter():
    import sys

    assert command_line(["python", "-m", "router.train"]) == [sys.executable, "-m", "router.train"]
    assert command_line(["./train.sh"]) == ["./train.sh"]


def test_the_bento_name_and_build_context_come_from_the_bentofile(tmp_path):
    project = read_project(_project(tmp_path))
    (tmp_path / "bentofile.yaml").write_text("service: 'router.service:TicketRouter'\ninclude: ['router/*.py']\n")
    (tmp_path / "router").mkdir()
    for name in ("service.py", "schemas.py"):
        (tmp_path / "router" / name).write_text("")
    (tmp_path / "router" / "notes.txt").write_text("")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "big.py").write_text("")
    assert project.bento_name == "ticket_router"  # BentoML's snake case, as `bentoml build` names it
    (tmp_path / "requirements.txt").write_text("scikit-learn\n")  # top-level files: what a Python-defined image names
    assert [p.relative_to(tmp_path).as_posix() for p in build_context(project)] == [
        "bentofile.yaml", "requirements.txt", "router/schemas.py", "router/service.py"]


def test_build_options_may_live_in_pyproject_toml_as_bentoml_reads_them(tmp_path):
    from shipyard.project import ProjectError, find_build_file, read_build_options

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_build_file(tmp_path) is None  # a pyproject.toml without BentoML's table is not one
    (tmp_path / "pyproject.toml").write_text('[tool.bentoml.build]\nservice = "service:Summarization"\n'
                                              'include = ["*.py"]\n')
    assert find_build_file(tmp_path) == "pyproject.toml"
    options = read_build_options(tmp_path / "pyproject.toml")
    assert options == {"service": "service:Summarization", "include": ["*.py"]}
    (tmp_path / "bentofile.yaml").write_text("service: 'other:Service'\n")
    assert find_build_file(tmp_path) == "bentofile.yaml"  # BentoML's order
    (tmp_path / "pyproject.toml").write_text('[tool.bentoml.build]\ninclude = ["*.py"]\n')
    with pytest.raises(ProjectError, match=r"\[tool.bentoml.build\] needs `service`"):
        read_build_options(tmp_path / "pyproject.toml")


def test_a_schemathesis_suite_takes_no_path(tmp_path):
    with pytest.raises(ProjectError, match="runner schemathesis takes no path"):
        read_project(_project(tmp_path, MINIMAL + "suites: {fuzz: {runner: schemathesis, path: x}}\n"))
