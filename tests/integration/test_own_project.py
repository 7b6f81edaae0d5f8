"""A second BentoML project, not this repository's, taken through shipyard exactly as the README's
"Use shipyard on your own BentoML project" section says, command by command.

The project (tests/projects/ticket_router: a ticket router with its own schema, two routes and its
own model, importing nothing of shipyard) is copied to a temporary folder outside the repository,
gets a virtual environment of its own with shipyard installed from this repository as a user
installs it (`pip install <path>`, not editable, its requirements resolved from the index next to the
project's own), and runs: init, its own training, build, deploy,
a promotion refused for want of a verdict, verify, promotion, then the same on the local
Kubernetes cluster (the image built on a base from Debian packages, deployed by digest into the
project's own namespaces), a second model through every step, history and rollback on both. Nothing of the checkout or of this repository's
environment is imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.environments import patch_pod_deadline, rewrite_environment
from tests.integration.conftest import KUBECONFIG, KUBECTL

pytestmark = [pytest.mark.server, pytest.mark.docker, pytest.mark.cluster, pytest.mark.walkthrough]
TEMPLATE = PROJECT_ROOT / "tests" / "projects" / "ticket_router"
SECTION = "## Use shipyard on your own BentoML project"


def readme_commands() -> list[str]:
    """The section's shell block, one command per line, comments kept (they say what to expect)."""
    text = (PROJECT_ROOT / "README.md").read_text().split(SECTION, 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def _venv(root: Path, python: str = sys.executable) -> Path:
    """The project's own environment, as its authors have it: a venv with the project's own
    requirements. shipyard comes later, by the README's `pip install`, resolved from the index next
    to them (pip's wheel cache, outside the repository, makes it seconds after the first run)."""
    venv = root / ".venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip_install(venv, "-r", str(root / "requirements.txt"))
    return venv


def pip_install(venv: Path, *args: str) -> None:
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def _run(line: str, cwd: Path, env: dict[str, str], venv: Path) -> subprocess.CompletedProcess:
    words = line.split("#", 1)[0].split()
    if words[0] == "export":  # the user's cluster: here, this repository's local one
        name, _, _ = words[1].partition("=")
        assert name == "KUBECONFIG", line
        env[name] = str(KUBECONFIG)
        return subprocess.CompletedProcess(words, 0, "", "")
    if words[:2] == ["pip", "install"]:  # the toolkit and what it requires, resolved beside the project's pins
        words = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 str(PROJECT_ROOT)]
    elif words[0] == "python":
        words[0] = str(venv / "bin" / "python")
    elif words[0] == "shipyard":
        words[0] = str(venv / "bin" / "shipyard")
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def own_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-project") / "ticket-router"
    shutil.copytree(TEMPLATE, root, ignore=shutil.ignore_patterns("__pycache__"))
    assert PROJECT_ROOT not in root.parents
    venv = _venv(root)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k not in ("BENTOML_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    # kubectl on PATH, as a user has it: the local cluster's own build.
    env.update(BENTOML_HOME=str(root.parent / "bentoml-home"), PATH=f"{venv / 'bin'}:{KUBECTL.parent}:{env['PATH']}")
    yield root, venv, env
    for name in ("staging", "production"):
        subprocess.run([str(venv / "bin" / "shipyard"), "stop", name], cwd=root, env=env, capture_output=True)
    _delete_namespaces(wait=False)


def _delete_namespaces(wait: bool) -> None:
    subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "delete", "namespace", "--ignore-not-found",
                    f"--wait={str(wait).lower()}", "--timeout=180s", "ticket-router-staging", "ticket-router-production"],
                   capture_output=True, timeout=240)


def test_the_readme_walkthrough_takes_a_project_shipyard_has_never_seen(own_project, request):
    root, venv, env = own_project
    assert not re.search(r"\bshipyard\b", "\n".join(p.read_text() for p in (root / "router").glob("*.py")))
    bentos: list[str] = []
    images: list[str] = []
    for line in readme_commands():
        if line.startswith("export KUBECONFIG"):  # the walkthrough's cluster half: only now is it needed
            request.getfixturevalue("cluster_up")
            _delete_namespaces(wait=True)  # a previous run's records would be this run's history
        result = _run(line, root, env, venv)
        said = f"`{line}` exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if "# refused" in line:
            assert result.returncode == 1 and "no verdict for staging" in result.stderr, said
            continue
        assert result.returncode == 0, said
        if line.startswith("shipyard init"):
            # What init wrote, as a test environment: its gates judge behaviour here, not this
            # machine's speed (tests/environments.py); a user's staging keeps init's bounds.
            for name in ("staging", "production"):
                rewrite_environment(root / "environments" / name)
                patch_pod_deadline(root / "environments" / name)
        if line.startswith("pip install"):
            installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import shipyard; print(shipyard.__file__)"],
                                       capture_output=True, text=True, env=env, cwd=root).stdout.strip()
            assert installed.startswith(str(venv)), f"shipyard imported from {installed}, not the project's venv"
        if line.startswith("shipyard build"):
            bentos.append(re.search(r"bento (\S+)", result.stdout).group(1))
        if line.startswith("shipyard image build"):
            images.append(result.stdout.strip().splitlines()[-1])
        if line.startswith("shipyard verify"):
            assert "verdict for staging: PASSED" in result.stdout, said
        if line.startswith("shipyard batch"):  # tickets.csv: 7 rows, 3 of them invalid
            assert "7 rows in = 4" in result.stdout and "+ 3 rejected" in result.stdout, said
    # The generic batch entry point, sharded on the cluster, answers exactly as it does in process.
    for name in ("routed.csv", "routed.rejects.csv"):
        assert (root / name).read_bytes() == (root / name.replace("routed", "routed-k8s")).read_bytes(), name
    kinds = [("promote", "succeeded"), ("promote", "succeeded"), ("rollback", "succeeded")]
    for target, subjects in (("local", bentos), ("kubernetes", images)):
        history = json.loads(_run(f"shipyard history production --target {target} -o json", root, env, venv).stdout)
        assert [(r["kind"], r["outcome"]) for r in history] == kinds, target
        assert [r["subject"] for r in history] == [subjects[0], subjects[1], subjects[0]], target
        status = json.loads(_run(f"shipyard status production --target {target} -o json", root, env, venv).stdout)
        assert status[0]["state"] == "ready", status
    assert status[0]["image"] == images[0] and status[0]["bento"] == bentos[0]
    # Nothing of it inside the repository, and the repository unchanged by it.
    assert not (PROJECT_ROOT / "tests" / "projects" / "ticket_router" / "shipyard.yaml").exists()


def test_what_init_writes_passes_the_checks_a_deploy_makes(tmp_path, cluster_up):  # kubectl: the cluster build's
    """Schema validation (Kubernetes 1.34, strict), the scanner (checkov, no exception written) and
    parity between the two environments: what `shipyard deploy --target kubernetes` checks first."""
    from tests.conftest import run_cli

    root = tmp_path / "ticket-router"
    shutil.copytree(TEMPLATE, root, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"SHIPYARD_PROJECT": str(root), "SHIPYARD_STATE": str(tmp_path / "state"), "SHIPYARD_KUBECTL": str(KUBECTL)}
    assert run_cli("init", cwd=root, env=env).returncode == 0
    again = run_cli("init", cwd=root, env=env)
    assert again.returncode == 2 and "not overwriting" in again.stderr and "shipyard.yaml" in again.stderr
    check = ("from shipyard import manifests\n"
             "for name in ('staging', 'production'):\n"
             "    objects = manifests.render(name)\n"
             "    manifests.validate(objects)\n"
             "    scan = manifests.scan(objects)\n"
             "    print(name, len(objects), scan.passed, scan.failed, scan.skipped)\n"
             "    assert not scan.failed and not scan.skipped, scan.failed\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=root, env=dict(os.environ, **env),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    diff = run_cli("diff", "staging", "production", cwd=root, env=env)
    assert diff.returncode == 0 and "0 outside staging's parity.allow" in diff.stdout, diff.stdout + diff.stderr
