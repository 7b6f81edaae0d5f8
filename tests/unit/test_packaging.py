"""What installing the toolkit brings into a project's environment: ranges for what the toolkit
imports, never the reference project's libraries, and the Pythons it supports."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
REFERENCE_PROJECTS_OWN = {"scikit-learn", "pandas", "numpy", "pyarrow", "redis", "onnx", "onnxruntime", "joblib"}


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_toolkit_requires_none_of_the_reference_projects_libraries():
    required = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not required & REFERENCE_PROJECTS_OWN, required & REFERENCE_PROJECTS_OWN


def test_every_requirement_is_a_range_not_a_pin():
    """A pin (==) makes every project that pins another version unresolvable; exact versions for
    this repository live in requirements/constraints.txt."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        assert "==" not in requirement and re.search(r"[<>~]", requirement), requirement


def test_this_repositorys_constraints_pin_everything_the_toolkit_requires():
    pinned = {_name(line) for line in (PROJECT_ROOT / "requirements" / "constraints.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    required = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert required <= pinned, required - pinned


def test_python_3_11_and_3_12_are_supported():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.13"


def test_uv_comes_with_the_toolkit_not_from_bentoml_mid_build():
    """BentoML locks a Bento's packages with `python -m uv` and, when uv is missing, pip-installs it
    into the running environment during the build: two builds at once (make test's workers) raced
    there, one exec'ing the binary the other was still writing (CI, stop 39)."""
    assert "uv" in {_name(r) for r in PYPROJECT["project"]["dependencies"]}
