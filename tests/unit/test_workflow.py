"""The pipeline template is linted by actionlint (built from its Go module), and the linter is
shown to catch a broken workflow, so a passing lint means something."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def actionlint() -> str:
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "install-actionlint")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_release_workflow_lints_clean(actionlint):
    result = subprocess.run([actionlint, "-no-color", str(PROJECT_ROOT / ".github" / "workflows" / "release.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_is_caught(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.nosuchthing }}\n        uses: actions/checkout@v4\n")
    result = subprocess.run([actionlint, "-no-color", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0


def test_every_step_calls_make_or_shipyard_or_a_project_script():
    import yaml

    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "release.yml").read_text())
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" not in step or "credentials" in step.get("name", "").lower():
                continue
            for line in filter(None, (l.strip() for l in step["run"].splitlines())):
                assert line.split()[0] in ("make", "sudo", ".venv/bin/shipyard", "scripts/image/up", "echo"), line
