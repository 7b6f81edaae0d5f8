"""`pip install <this repository>` into a project's own environment, as a user does: resolved from
the index beside the project's own pins, on each Python the toolkit supports.

- Python 3.12: shipyard installs, and takes a project (the ticket router) through init, its own
  training, build, deploy, verify and promotion on the local target.
(Python 3.11 with an older scikit-learn pinned first: tests/integration/test_corpus.py, iris_classifier.)
pip's wheel cache (outside the repository) makes the installs seconds after the first run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.environments import quick_suites, rewrite_environment

pytestmark = pytest.mark.server
PROJECT = PROJECT_ROOT / "tests" / "projects" / "ticket_router"


def python(version: str) -> str:
    """The machine's interpreter for `version`: $PYTHON<major><minor>, python3.X on PATH, or pyenv's."""
    explicit = os.environ.get("PYTHON" + version.replace(".", ""))
    candidates = [explicit] if explicit else [shutil.which(f"python{version}"),
                                              *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    raise AssertionError(f"no working python{version} on this machine: install it (pyenv install {version}) "
                         f"or point PYTHON{version.replace('.', '')} at one")


def venv_with(root: Path, version: str, *first: str) -> Path:
    """A fresh venv on Python `version`, with the project's own `first` requirements, then shipyard."""
    venv = root / f"venv-{version}"
    subprocess.run([python(version), "-m", "venv", str(venv)], check=True, timeout=300)
    for args in ([*first] if first else [], [str(PROJECT_ROOT)]):
        if args:
            result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                     "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_python_3_12_takes_a_project_from_init_to_promotion(tmp_path):
    root = tmp_path / "ticket-router"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__"))
    venv = venv_with(tmp_path, "3.12", "-r", str(root / "requirements.txt"))
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True).stdout.strip() == "(3, 12)"
    assert (venv / "bin" / "uv").is_file(), "uv came not with shipyard: BentoML would pip-install it mid-build"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k not in ("BENTOML_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BENTOML_HOME=str(tmp_path / "bentoml-home"), PATH=f"{venv / 'bin'}:{env['PATH']}")

    def run(*words: str) -> subprocess.CompletedProcess:
        result = subprocess.run(list(words), cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(words)}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    try:
        assert "shipyard" in run("shipyard", "--version").stdout
        run("shipyard", "init")
        for name in ("staging", "production"):  # gates on behaviour, not this machine's speed
            rewrite_environment(root / "environments" / name)
        quick_suites(root / "environments" / "staging")  # every suite, for seconds (tests/environments.py)
        run("python", "-m", "router.train")
        built = run("shipyard", "build").stdout
        assert "bento ticket_router:" in built, built  # the name BentoML gave it: no `name` in the bentofile
        run("shipyard", "deploy", "staging")
        assert "verdict for staging: PASSED" in run("shipyard", "verify", "staging").stdout
        run("shipyard", "promote", "staging", "--approve")
        assert "ready" in run("shipyard", "status", "production").stdout
    finally:
        for name in ("staging", "production"):
            subprocess.run([str(venv / "bin" / "shipyard"), "stop", name], cwd=root, env=env, capture_output=True)
