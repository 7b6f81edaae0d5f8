"""The compatibility corpus (tests/projects/): BentoML projects written as BentoML's documentation
writes them, none shaped for shipyard, each in a virtual environment of its own made as its authors
make it (the project's own requirements first, then `pip install <this repository>` resolved beside
them), taken through init, its own training, build, deploy, verify and promotion on the local target.

| project          | what of BentoML it uses                                                        |
|------------------|--------------------------------------------------------------------------------|
| iris_classifier  | no `name` in the bentofile (BentoML names the Bento), a batchable numpy API with |
|                  | Shape/DType validators and a Field example, scikit-learn 1.5.2 (older than this  |
|                  | repository's), `bentoml.models.create` + joblib                                 |
| spam_gateway     | two services (`bentoml.depends`, so `bentoml serve` serves it), adaptive        |
|                  | batching, async APIs, a `bentoml.Context` that sets a header and the status, a |
|                  | streamed answer (AsyncGenerator[str]), `requirements_txt`, bentofile envs/labels |
| ticket_router    | test_own_project.py (the README's walkthrough) and test_install.py (Python 3.12) |

media_tools (image and file uploads, a task API, a mounted ASGI app, lifecycle hooks) is not run
yet: the built-in suites do not send multipart bodies or drive task APIs (issue #29).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.environments import rewrite_environment

pytestmark = pytest.mark.server
PROJECTS = PROJECT_ROOT / "tests" / "projects"


def _venv(root: Path) -> Path:
    """The project's own requirements first, then shipyard from this repository, resolved."""
    venv = root.parent / f"{root.name}-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    for args in (["-r", str(root / "requirements.txt")], [str(PROJECT_ROOT)]):
        result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                 "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
    return venv


def _version(venv: Path, distribution: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c",
                           f"from importlib.metadata import version; print(version({distribution!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(("project", "bento", "pins"), [
    ("iris_classifier", "iris_classifier", {"scikit-learn": "1.5.2"}),
    ("spam_gateway", "spam-gateway", {}),
])
def test_a_project_in_bentomls_documented_style_goes_from_init_to_promotion(project, bento, pins, tmp_path):
    root = tmp_path / project
    shutil.copytree(PROJECTS / project, root, ignore=shutil.ignore_patterns("__pycache__"))
    venv = _venv(root)
    for distribution, version in pins.items():  # shipyard installed beside the project's pins, not over them
        assert _version(venv, distribution) == version
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k not in ("BENTOML_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BENTOML_HOME=str(tmp_path / "bentoml-home"), PATH=f"{venv / 'bin'}:{env['PATH']}")

    def run(*words: str, expect: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run(list(words), cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == expect, f"{' '.join(words)}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    try:
        run("shipyard", "init")
        for name in ("staging", "production"):  # gates on behaviour, not this machine's speed
            rewrite_environment(root / "environments" / name)
        run("python", "train.py")
        assert f"bento {bento}:" in run("shipyard", "build").stdout  # the name BentoML gave it
        run("shipyard", "deploy", "staging")
        verified = run("shipyard", "verify", "staging", "--short").stdout
        assert "verdict for staging: PASSED" in verified, verified
        assert "release 1 (promote) in production" in run("shipyard", "promote", "staging", "--approve").stdout
        assert "ready" in run("shipyard", "status", "production").stdout
        refused = run("shipyard", "rollback", "production", expect=1)
        assert "no earlier successful release to roll back to" in refused.stderr
    finally:
        for name in ("staging", "production"):
            subprocess.run([str(venv / "bin" / "shipyard"), "stop", name], cwd=root, env=env, capture_output=True)
