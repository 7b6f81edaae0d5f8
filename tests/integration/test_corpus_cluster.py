"""Corpus projects on the cluster (test_corpus.py takes them through the local target): each
built into an image on shipyard's Debian base, deployed by digest into its own namespaces,
verified by the staged suites running as pods, and promoted.

- media_tools is served by the `bentoml serve` hand-over (a task API, a mounted FastAPI app,
  file and image inputs): multipart bodies and task runs from suite pods;
- summarizer has no bentofile (`[tool.bentoml.build]` in pyproject.toml) and defines its runtime
  image in Python (`bentoml.images.Image`), which shipyard builds on its own base like any other;
- ticket_router is the README's walkthrough (test_own_project.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.environments import patch_pod_deadline, rewrite_environment
from tests.integration.conftest import KUBECONFIG, KUBECTL
from tests.integration.test_corpus import _venv, project_env

pytestmark = [pytest.mark.server, pytest.mark.docker, pytest.mark.cluster]
PROJECTS = PROJECT_ROOT / "tests" / "projects"


def _namespaces(root: Path) -> list[str]:
    return [yaml.safe_load((root / "environments" / name / "environment.yaml").read_text())["namespace"]
            for name in ("staging", "production")]


def _delete(namespaces: list[str], wait: bool) -> None:
    subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "delete", "namespace", "--ignore-not-found",
                    f"--wait={str(wait).lower()}", "--timeout=180s", *namespaces], capture_output=True, timeout=240)


@pytest.mark.parametrize(("project", "served_by"), [("media_tools", "bentoml serve"), ("summarizer", "shipyard")])
def test_a_corpus_project_is_verified_and_promoted_on_the_cluster(project, served_by, tmp_path, cluster_up):
    root = tmp_path / project
    shutil.copytree(PROJECTS / project, root, ignore=shutil.ignore_patterns("__pycache__"))
    venv = _venv(tmp_path / "venv", root / "requirements.txt")
    # kubectl on PATH, as a user has it: the local cluster's own build.
    env = project_env(venv, tmp_path / "bentoml-home", KUBECONFIG=str(KUBECONFIG),
                      PATH=f"{KUBECTL.parent}:{os.environ['PATH']}")

    def run(*words: str) -> subprocess.CompletedProcess:
        result = subprocess.run(list(words), cwd=root, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{' '.join(words)}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    run("shipyard", "init")
    namespaces = _namespaces(root)
    _delete(namespaces, wait=True)  # a previous run's records would be this run's history
    try:
        for name in ("staging", "production"):  # behaviour gates; the pods' deadline a hang bound
            rewrite_environment(root / "environments" / name)
            patch_pod_deadline(root / "environments" / name)
        run("python", "train.py")
        run("shipyard", "build")
        image = run("shipyard", "image", "build").stdout.strip().splitlines()[-1]
        run("shipyard", "deploy", "staging", "--target", "kubernetes")
        logs = subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", namespaces[0], "logs",
                               "-l", "app.kubernetes.io/component=api", "--tail=200"],
                              capture_output=True, text=True, timeout=60).stdout
        handed_over = "serving with `bentoml serve`" in logs
        assert handed_over == (served_by == "bentoml serve"), logs[-2000:]
        verified = run("shipyard", "verify", "staging", "--target", "kubernetes", "--short").stdout
        assert "verdict for staging: PASSED" in verified, verified
        run("shipyard", "promote", "staging", "--target", "kubernetes", "--approve")
        status = json.loads(run("shipyard", "status", "production", "--target", "kubernetes", "-o", "json").stdout)
        assert status[0]["state"] == "ready" and status[0]["image"] == image, status
    finally:
        _delete(namespaces, wait=False)
