"""The compatibility corpus (tests/projects/): BentoML projects written as BentoML's documentation
writes them, none shaped for shipyard, taken through `shipyard init`, their own training, build,
deploy, verify and promotion on the local target, each in a virtual environment made as its
authors make it (their requirements first, then this repository installed beside them, by uv).

A project whose requirements pin an older library (iris_classifier: scikit-learn 1.5.2; spam_gateway
once more with the oldest BentoML release shipyard supports) or come from its own requirements file
(spam_gateway) gets a venv of its own; the others share one made
from all their requirements, as `make test`'s budget asks (test_corpus_shared.py).

| project             | what of BentoML it uses                                                        |
|---------------------|--------------------------------------------------------------------------------|
| iris_classifier     | no `name`; batchable numpy API with Shape/DType; Field examples; scikit-learn    |
|                     | 1.5.2 (older than this repository's); `bentoml.models.create` + joblib           |
| spam_gateway        | `bentoml.depends` (two services); adaptive batching; async APIs; a Context that  |
|                     | sets a header and the status; AsyncGenerator[str] stream; requirements_txt; envs |
| media_tools         | PIL image and Path file inputs with ContentType; `@bentoml.task`; a mounted      |
|                     | FastAPI app; on_startup/on_shutdown/`__is_ready__`; `lock_packages: false`       |
| summarizer          | no bentofile: `[tool.bentoml.build]` in pyproject.toml; the runtime image in      |
|                     | Python (`bentoml.images.Image`); str in, str out (BentoML's quickstart shape)   |
| house_prices        | a pandas DataFrame with DataframeSchema columns; `bentoml.sklearn` save/load;    |
|                     | numpy answer; `InvalidArgument` for bad rows; a samples file                     |
| image_filters       | PIL image answers; custom routes (`route="/v1/blur"`); a bentofile `name`        |
| sentence_embeddings | batchable list[str] -> np.ndarray; `input_spec=` an IODescriptor; a sync         |
|                     | Generator[str] stream                                                            |
| churn_predictor     | workers=2 and max_concurrency (`bentoml serve` hand-over); on_deployment;        |
|                     | `__is_alive__`; Literal and Optional fields; service and bentofile envs          |
| phrasebook          | CORS configured; async APIs with a Context setting a header; annotated-types     |
| ticket_router       | test_own_project.py (the README's walkthrough, local and cluster) and            |
|                     | test_install.py (Python 3.12)                                                    |
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import httpx
import pytest

from tests.conftest import PROJECT_ROOT
from tests.environments import quick_suites, rewrite_environment

pytestmark = pytest.mark.server
PROJECTS = PROJECT_ROOT / "tests" / "projects"


def _venv(venv: Path, *requirements: Path, pins: tuple[str, ...] = ()) -> Path:
    """The projects' own requirements (and pins) first, then shipyard from this repository, resolved.

    Installed by uv (shipyard requires it; BentoML locks with it), not pip: the same resolution
    of the same pins from the same index, at a tenth of pip's CPU (4 s against 56 s for shipyard
    into a fresh venv here), which make test's budget on two cores needs. pip stays in the venv
    (shipyard downloads the runner image's wheels with it), and pip itself installs shipyard in
    the README walkthrough and the install test (test_own_project.py, test_install.py)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    uv = Path(sys.executable).parent / "uv"
    own = [*(arg for r in requirements if r.is_file() for arg in ("-r", str(r))), *pins]
    for args in ([own] if own else []) + [[str(PROJECT_ROOT)]]:
        result = subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                                 *args], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
    return venv


def project_env(venv: Path, bentoml_home: Path, **extra: str) -> dict[str, str]:
    """A user's shell in the project: their venv first on PATH, BentoML's stores of its own, and
    nothing of this repository's test run (SHIPYARD_*, PYTHONPATH, VIRTUAL_ENV)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k not in ("BENTOML_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BENTOML_HOME=str(bentoml_home), **extra)
    env["PATH"] = f"{venv / 'bin'}:{extra.get('PATH', env['PATH'])}"
    return env


def _version(venv: Path, distribution: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c",
                           f"from importlib.metadata import version; print(version({distribution!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _cors_preflight_is_answered(url: str) -> None:
    """phrasebook configures CORS: a browser's preflight gets BentoML's answer, not a 405."""
    answer = httpx.options(f"{url}/translate", headers={"Origin": "https://app.example.test",
                                                       "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example.test"


def _own_bentoml_build_is_refused(run: Callable[..., subprocess.CompletedProcess]) -> None:
    """An ML engineer's own `bentoml build` makes a Bento without the serving layer: deploying it is
    refused with the fix, and `shipyard build` of the same project then deploys."""
    run("bentoml", "build")
    refused = run("shipyard", "deploy", "staging", expect=1)
    assert "built without shipyard's serving layer" in refused.stderr and "run `shipyard build`" in refused.stderr


CHECKS: dict[str, Callable[[str], None]] = {"phrasebook": _cors_preflight_is_answered}


OLDEST_BENTOML = "1.4.36"  # the oldest release shipyard_serving/compat.py says it was tested on


OWN_VENV = [
    ("iris_classifier", "iris_classifier", {"scikit-learn": "1.5.2"}),
    ("spam_gateway", "spam-gateway", {}),
    # The oldest BentoML release the serving layer supports, pinned by the project: two services,
    # batching, streams and a Context on it, and the serving layer's own checks of its internals.
    pytest.param("spam_gateway", "spam-gateway", {"bentoml": OLDEST_BENTOML}, id="spam_gateway-oldest-bentoml"),
]


@pytest.mark.parametrize(("project", "bento", "pins"), OWN_VENV)
def test_a_project_in_its_own_venv_goes_from_init_to_promotion(project, bento, pins, tmp_path):
    venv = _venv(tmp_path / f"{project}-venv", PROJECTS / project / "requirements.txt",
                 pins=tuple(f"{name}=={version}" for name, version in pins.items()))
    for distribution, version in pins.items():  # shipyard installed beside the project's pins, not over them
        assert _version(venv, distribution) == version
    if "bentoml" in pins:  # the borrowed internals and the patches around them, on this release
        checked = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  "--noconftest", str(PROJECT_ROOT / "tests" / "unit" / "test_compat.py")],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert checked.returncode == 0, checked.stdout[-3000:]
    take_through(project, bento, venv, tmp_path)


def take_through(project: str, bento: str, venv: Path, tmp_path: Path) -> None:
    """A copy of the project, outside the repository, from `shipyard init` to a promotion and a
    refused rollback on the local target, with `venv`'s shipyard."""
    root = tmp_path / project
    shutil.copytree(PROJECTS / project, root, ignore=shutil.ignore_patterns("__pycache__"))
    env = project_env(venv, tmp_path / "bentoml-home")

    def run(*words: str, expect: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run(list(words), cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == expect, f"{' '.join(words)}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    try:
        run("shipyard", "init")
        for name in ("staging", "production"):  # gates on behaviour, not this machine's speed
            rewrite_environment(root / "environments" / name)
        quick_suites(root / "environments" / "staging")  # every suite, for seconds (tests/environments.py)
        run("python", "train.py")
        if project == "summarizer":
            _own_bentoml_build_is_refused(run)
        assert f"bento {bento}:" in run("shipyard", "build").stdout  # the name BentoML gave it
        run("shipyard", "deploy", "staging")
        verified = run("shipyard", "verify", "staging").stdout
        assert "verdict for staging: PASSED" in verified, verified
        if project in CHECKS:
            CHECKS[project](re.search(r"http://[\d.:]+", run("shipyard", "status", "staging").stdout).group(0))
        assert "release 1 (promote) in production" in run("shipyard", "promote", "staging", "--approve").stdout
        assert "ready" in run("shipyard", "status", "production").stdout
        refused = run("shipyard", "rollback", "production", expect=1)
        assert "no earlier successful release to roll back to" in refused.stderr
    finally:
        for name in ("staging", "production"):
            subprocess.run([str(venv / "bin" / "shipyard"), "stop", name], cwd=root, env=env, capture_output=True)
