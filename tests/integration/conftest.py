"""A real `bentoml serve` of the built Bento on a loopback port, deployed by the real CLI."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


from tests.conftest import PROJECT_ROOT, TEST_ROWS, free_port, run_cli

CLUSTER = PROJECT_ROOT / ".shipyard" / "cluster"
KUBECTL = CLUSTER / "bin" / "kubectl"
KUBECONFIG = CLUSTER / "admin.kubeconfig"
REDIS_URL = "redis://127.0.0.1:6390/0"  # scripts/redis/up


def kubectl(*args: str, check: bool = True, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """The local cluster's kubectl as its admin."""
    result = subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args],
                            capture_output=True, text=True, timeout=timeout, **kw)
    assert not check or result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result


def cluster_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """A cluster script; `up` may wait for the one `make test` runs in the background, which builds
    the cluster from source on a cold cache (the bound only catches a hang)."""
    return subprocess.run([str(PROJECT_ROOT / "scripts" / "cluster" / name), *args], capture_output=True,
                          text=True, timeout=2700)


@pytest.fixture(scope="session")
def cluster_up() -> None:
    """The local cluster, up (a no-op when `make test` already brought it up)."""
    result = cluster_script("up")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module", autouse=True)
def _cluster_for_cluster_modules(request: pytest.FixtureRequest) -> None:
    """A module marked `cluster` starts only once the cluster is up: `make test` may still be
    building it in the background when the first such module begins."""
    if request.node.get_closest_marker("cluster") and not request.node.get_closest_marker("walkthrough"):
        request.getfixturevalue("cluster_up")


@dataclass(frozen=True)
class Served:
    url: str
    env_name: str
    cli_env: dict[str, str]


@pytest.fixture(scope="session")
def environments(state_dir: Path) -> Path:
    root = state_dir / "environments"
    (root / "itest").mkdir(parents=True, exist_ok=True)
    (root / "itest" / "environment.yaml").write_text(f"name: itest\ntarget: local\nlocal: {{port: {free_port()}}}\n")
    return root


@pytest.fixture(scope="session")
def cli_env(environments: Path) -> dict[str, str]:
    return {"SHIPYARD_ENVIRONMENTS": str(environments)}


@pytest.fixture(scope="session")
def built_bento(cli_env) -> str:
    for step in (["train", "--rows", str(TEST_ROWS)], ["build"]):
        result = run_cli(*step, env=cli_env)
        assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]


@pytest.fixture(scope="session")
def served(built_bento, cli_env):
    result = run_cli("deploy", "itest", "--target", "local", "--bento", built_bento, env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    url = result.stdout.split(" at ")[1].split(",")[0]
    yield Served(url, "itest", cli_env)
    run_cli("stop", "itest", env=cli_env)


@pytest.fixture(scope="session")
def client(served):
    with httpx.Client(base_url=served.url, timeout=30) as c:
        yield c


@dataclass(frozen=True)
class BuiltImage:
    reference: str  # registry/repository@sha256:...
    tag: str
    output: str
    jobs_reference: str  # the jobs image built with it (image.serving_lock)
    size_bytes: int


@pytest.fixture(scope="session")
def built_image(built_bento, cli_env) -> BuiltImage:
    """`shipyard image build` of the session's Bento: containerize, push, digest (real docker, real registry)."""
    result = run_cli("image", "build", env=cli_env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(run_cli("image", "list", "-o", "json", env=cli_env).stdout)
    record = next(r for r in listed if r["reference"] == result.stdout.strip())
    return BuiltImage(record["reference"], record["tag"], result.stdout + result.stderr, record["jobs_reference"],
                      record["size_bytes"])


def wait_ready(url: str, limit_s: float = 120) -> None:
    """Polls /readyz; the limit only catches hangs."""
    from shipyard.targets import wait_until_ready

    assert wait_until_ready(url, limit_s), f"{url} never became ready"


@pytest.fixture(scope="session")
def redis_up():
    """The stream broker on loopback (a no-op when `make test` already started it)."""
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "redis" / "up")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    import redis

    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


