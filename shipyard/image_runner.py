"""The runner image: what runs a project's staged suites inside its cluster (shipyard.harness.pod).

It is the project's jobs image (the Bento with every package the project needs, so its own suites
import what they import on a laptop) plus:
- the harness's packages (pytest, locust, schemathesis, ...) at exactly the versions shipyard runs
  with here, installed offline from wheels downloaded on the host;
- shipyard's own package (the harness and the built-in suites);
- the project's suite files under /workspace: shipyard.yaml, each own suite's folder with the
  package files above it, and the samples file.
It runs as the jobs image's non-root user, on a read-only root (a /tmp volume), and is pushed and
pinned by digest like the other images, built from the same Bento in the same `shipyard image build`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

from shipyard.paths import cache_dir, filled_once
from shipyard.project import Project, current_project

WORKSPACE = "/workspace"
TOOLKIT = "/opt/shipyard"
# What the harness imports in a pod (suites.py, the staged suites, the plugin, the stress suite's
# open-loop generator on uvloop and httptools): with their own requirements, at the versions
# installed here.
HARNESS_PACKAGES = ("locust", "pytest", "schemathesis", "hypothesis", "httpx", "openapi-spec-validator",
                    "pydantic", "pyyaml", "uvloop", "httptools")
PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "linux_x86_64", "any")
DOCKERFILE = """FROM {base}
USER root
COPY wheels /tmp/runner-wheels
COPY pins.txt /tmp/runner-pins.txt
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python --offline --no-index --no-deps --quiet \\
      --find-links /tmp/runner-wheels -r /tmp/runner-pins.txt \\
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib/python3.11/site-packages >/dev/null \\
 && rm -rf /tmp/runner-wheels /tmp/runner-pins.txt
COPY shipyard {toolkit}/shipyard
COPY project {workspace}
RUN /opt/venv/bin/python -m compileall -q {toolkit} >/dev/null
ENV PYTHONPATH={toolkit}:{workspace} HOME=/tmp PYTHONDONTWRITEBYTECODE=1
WORKDIR {workspace}
USER 10001
ENTRYPOINT ["python", "-m", "shipyard.harness.pod"]
CMD ["run"]
LABEL org.opencontainers.image.description="shipyard suite runner: the project's jobs image, the harness and the staged suites"
"""


class RunnerImageError(Exception):
    """The runner image could not be built; the message says what to do."""


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; (]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def harness_pins() -> list[str]:
    """HARNESS_PACKAGES and everything they require (for this platform), pinned as installed here."""
    seen: dict[str, str] = {}
    todo = list(HARNESS_PACKAGES)
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or other-platform requirement that is not installed here
        seen[name] = dist.version
        for requirement in dist.requires or []:
            if ";" in requirement:
                from packaging.markers import Marker

                marker = requirement.split(";", 1)[1]
                if "extra" in marker or not Marker(marker).evaluate():
                    continue
            todo.append(requirement)
    return sorted(f"{name}=={version}" for name, version in seen.items())


def _wheels(pins: list[str], echo: Callable[[str], None]) -> Path:
    """The pins' wheels, downloaded once per set of pins into the cache (no network in a build)."""
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    return filled_once(cache_dir() / "runner-wheels" / key, lambda folder: _download(pins, folder, echo))


def _download(pins: list[str], folder: Path, echo: Callable[[str], None]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    echo(f"downloading {len(pins)} wheels for the runner image (once; cached in {folder})")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(pins) + "\n")
        requirements.flush()
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
               *[arg for platform in PLATFORMS for arg in ("--platform", platform)], "-r", requirements.name,
               "-d", str(folder)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RunnerImageError(f"downloading the runner's wheels failed: {result.stderr.strip()[-800:]}")


def suite_files(project: Project) -> list[Path]:
    """The project's files a suite pod needs, relative to its root: shipyard.yaml, every own suite
    (its folder, or its file), the package and conftest files above them, and the samples."""
    root = project.root
    files = {Path("shipyard.yaml")}
    for spec in project.suites.values():
        if not spec.path:
            continue
        path = project.path(spec.path)
        if path.is_dir():
            files.update(p.relative_to(root) for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            files.add(path.relative_to(root))
        for parent in path.relative_to(root).parents:
            for name in ("__init__.py", "conftest.py"):
                if (root / parent / name).is_file():
                    files.add(parent / name)
    if project.traffic.samples:
        files.add(project.path(project.traffic.samples).relative_to(root))
    return sorted(files)


def build_runner_image(base: str, image: str, echo: Callable[[str], None]) -> None:
    """Builds `image` FROM `base` (the jobs image) with the harness and the project's suites."""
    import shipyard

    project = current_project()
    pins = harness_pins()
    wheels = _wheels(pins, echo)
    with tempfile.TemporaryDirectory(prefix="shipyard-runner-") as scratch:
        context = Path(scratch)
        shutil.copytree(wheels, context / "wheels", ignore=shutil.ignore_patterns(".done"))
        (context / "pins.txt").write_text("\n".join(pins) + "\n")
        shutil.copytree(Path(shipyard.__file__).parent, context / "shipyard",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        files = suite_files(project)
        for relative in files:
            target = context / "project" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project.root / relative, target)
        (context / "Dockerfile").write_text(DOCKERFILE.format(base=base, toolkit=TOOLKIT, workspace=WORKSPACE))
        echo(f"building the runner image {image} (the jobs image + the harness + {len(files)} suite files)")
        result = subprocess.run(["docker", "build", "-q", "-t", image, str(context)], capture_output=True, text=True,
                                env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=1800)
    if result.returncode != 0:
        raise RunnerImageError(f"docker build of the runner image failed:\n{(result.stdout + result.stderr)[-1500:]}")
