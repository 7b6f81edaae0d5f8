"""Canary promotion on the local cluster: a second Deployment behind production's Service, each
step judged on production's own /metrics, under steady traffic sent from a pod inside the
production namespace (`shipyard traffic`), never from the host.

The staging and production here are the project's own overlays and namespaces with a test
environment.yaml: staging's gates are smoke alone, so a digest whose fault only production's
volume of traffic reveals gets through staging - exactly what a canary is for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shipyard.paths import state_dir
from tests.conftest import PROJECT_ROOT, run_cli
from tests.environments import copy_environments, rewrite_environment
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster

STAGING = """name: staging
target: kubernetes
namespace: fraud-staging
parity: {{with: production, allow: [spec.replicas, resources, namespace, hpa.minReplicas, hpa.maxReplicas]}}
promotion:
  to: production
  requires_approval: false
  post_deploy_suites: [smoke]
  strategy: canary
  canary:
    steps: [34, 50]
    pause_s: {pause_s}
    max_wait_s: {max_wait_s}
    decision: {{metric: shipyard_decisions_total, label: decision, value: fraud}}
    gates:
      requests: {{min: 40}}
      error_rate: {{max: 0.01}}
      p99_ms: {{max: 100}}
      decision_rate_shift: {{max: 0.2}}
gates:
  smoke: {{passed: {{min: 5}}}}
"""
PRODUCTION = """name: production
target: kubernetes
namespace: fraud-production
parity: {with: staging, allow: [spec.replicas, resources, namespace, hpa.minReplicas, hpa.maxReplicas]}
gates:
  smoke: {failed: {max: 0}, passed: {min: 5}}
"""
# A model runtime that fails now and then: from its 21st call on, every 20th raises. Loaded at
# interpreter start by a .pth file, so the image's own server and service run unchanged around it.
FAULT = """import onnxruntime.capi.onnxruntime_inference_collection as _c
_run, _calls = _c.Session.run, [0]
def run(self, *a, **k):
    _calls[0] += 1
    if _calls[0] > 20 and _calls[0] % 20 == 0:
        raise RuntimeError("injected fault: the model runtime failed")
    return _run(self, *a, **k)
_c.Session.run = run
"""


def _environments(root: Path, pause_s: float, max_wait_s: float = 60) -> Path:
    """The project's overlays as test environments (tests/environments.py: the canary's latency
    gate bounds only a hang), with this module's staging and production settings."""
    copy_environments(PROJECT_ROOT / "environments", root)
    for name, text in (("staging", STAGING.format(pause_s=pause_s, max_wait_s=max_wait_s)), ("production", PRODUCTION)):
        (root / name / "environment.yaml").write_text(text)
        rewrite_environment(root / name)
    return root


def _variant(base: str, name: str, extra: str = "") -> str:
    """A new digest built on `base` (docker build, pushed to the loopback registry)."""
    repo = base.split("@")[0]
    tag = f"{repo}:{name}-{os.getpid()}"
    dockerfile = f"FROM {base}\nLABEL shipyard.test={name}-{os.getpid()}\n{extra}"
    with_context = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        Path(with_context, "Dockerfile").write_text(dockerfile)
        Path(with_context, "injected_fault.py").write_text(FAULT)
        Path(with_context, "injected_fault.pth").write_text("import injected_fault\n")
        built = subprocess.run(["docker", "build", "-q", "-t", tag, with_context], capture_output=True, text=True,
                               env=dict(os.environ, DOCKER_BUILDKIT="0"), timeout=300)
        assert built.returncode == 0, built.stderr
    finally:
        shutil.rmtree(with_context)
    subprocess.run(["docker", "push", tag], capture_output=True, check=True, timeout=300)
    digest = subprocess.run(["docker", "image", "inspect", "-f", "{{index .RepoDigests 0}}", tag],
                            capture_output=True, text=True, check=True).stdout.strip()
    # Recorded like a build of the same Bento (its jobs image, its companions), at the front of the
    # records so no later test takes it for "the last image built".
    records_file = state_dir() / "images.json"
    records = json.loads(records_file.read_text())
    built = next(r for r in records if r["reference"] == base)
    records_file.write_text(json.dumps([dict(built, reference=digest, tag=tag)] + records, indent=2))
    return digest


@pytest.fixture(scope="module")
def k8s_env(tmp_path_factory) -> dict[str, str]:
    envs = _environments(tmp_path_factory.mktemp("canary-envs"), pause_s=10)
    return {"KUBECONFIG": str(KUBECONFIG), "SHIPYARD_ENVIRONMENTS": str(envs)}


@pytest.fixture(scope="module")
def stable(cluster_up, built_image, k8s_env) -> str:
    """Production and staging both serve digest A."""
    for env in ("production", "staging"):
        result = run_cli("deploy", env, "--image", built_image.reference, env=k8s_env, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    return built_image.reference


@pytest.fixture(scope="module")
def healthy(stable) -> str:
    return _variant(stable, "healthy")


@pytest.fixture(scope="module")
def faulty(stable) -> str:
    site = "/opt/venv/lib/python3.11/site-packages"
    return _variant(stable, "faulty", f"COPY injected_fault.py injected_fault.pth {site}/\n")


def _staging_runs_verified(image: str, k8s_env: dict[str, str]) -> None:
    deployed = run_cli("deploy", "staging", "--image", image, env=k8s_env, timeout=600)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    verified = run_cli("verify", "staging", "--suite", "smoke", env=k8s_env, timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _promote_with_traffic(k8s_env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`shipyard promote --traffic 40`: a pod in production sends 40 requests/s for as long as the
    canary runs; the promotion's result and the sender's summary from the release record."""
    promoted = run_cli("promote", "--traffic", "40", *extra, env=k8s_env, timeout=900)
    return promoted, (_history(k8s_env)[-1].get("canary") or {}).get("traffic") or {}


def _history(k8s_env: dict[str, str]) -> list[dict]:
    result = run_cli("history", "production", "-o", "json", env=k8s_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _traffic_jobs(namespace: str) -> list[str]:
    jobs = json.loads(kubectl("-n", namespace, "get", "jobs", "-l", "app.kubernetes.io/component=traffic",
                              "-o", "json").stdout)["items"]
    return [j["metadata"]["name"] for j in jobs if "deletionTimestamp" not in j["metadata"]]


def _serving(namespace: str) -> dict[str, set[str]]:
    """Ready API pods' images, by Deployment (the stable one and any canary)."""
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=api",
                              "-o", "json").stdout)["items"]
    found: dict[str, set[str]] = {}
    for p in pods:
        if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]:
            track = p["metadata"]["labels"].get("shipyard.dev/track", "stable")
            found.setdefault(track, set()).add(p["spec"]["containers"][0]["image"])
    return found


def test_a_healthy_canary_walks_every_step_under_load_and_completes(stable, healthy, k8s_env):
    assert run_cli("deploy", "production", "--image", stable, env=k8s_env, timeout=600).returncode == 0
    _staging_runs_verified(healthy, k8s_env)
    promoted, traffic = _promote_with_traffic(k8s_env, "--watch")
    out = promoted.stdout + promoted.stderr
    assert promoted.returncode == 0, out
    assert "step 1/2" in out and "step 2/2" in out and "so far" in out  # --watch: live lines per step
    assert "traffic stopped:" in out and "ready after" in out
    assert _serving("fraud-production") == {"stable": {healthy}}  # one Deployment, on the new digest
    release = _history(k8s_env)[-1]
    assert release["outcome"] == "succeeded" and release["subject"] == healthy and release["previous"] == stable
    steps = release["canary"]["steps"]
    assert [s["share_asked_pct"] for s in steps] == [34, 50] and all(s["passed"] for s in steps)
    assert [(s["canary_pods"], s["stable_pods"]) for s in steps] == [(1, 2), (2, 2)]
    assert all(s["measured"]["requests"] >= 40 and s["measured"]["stable_error_rate"] == 0 for s in steps)
    # Every request from inside production was answered, and none with an error, through the whole
    # canary; the sender was stopped by the promotion, not by a clock.
    assert traffic.get("sent", 0) > 200 and traffic["failed"] == 0 and traffic["server_errors"] == 0, traffic
    assert traffic["stopped_early"] and not _traffic_jobs("fraud-production"), traffic
    table = run_cli("history", "production", env=k8s_env).stdout
    assert "34%:ok 50%:ok" in table


def test_a_canary_that_answers_errors_aborts_at_the_first_step(stable, faulty, k8s_env):
    before = run_cli("status", "production", "-o", "json", env=k8s_env)
    current = json.loads(before.stdout)[0]["image"]
    _staging_runs_verified(faulty, k8s_env)
    promoted, traffic = _promote_with_traffic(k8s_env)
    out = promoted.stdout + promoted.stderr
    assert promoted.returncode == 1, out
    assert "step 1/2 (34 %) failed: error_rate" in out and "step 2/2" not in out
    assert _serving("fraud-production") == {"stable": {current}}  # the canary is gone, stable untouched
    release = _history(k8s_env)[-1]
    assert release["outcome"] == "aborted" and release["subject"] == faulty
    [step] = release["canary"]["steps"]
    failed = {g["metric"]: g for g in step["gates"] if not g["passed"]}
    assert set(failed) == {"error_rate"} and failed["error_rate"]["measured"] > 0.01
    assert step["measured"]["stable_error_rate"] == 0  # every error came from the canary's pods
    # Production's errors during the canary: real, and bounded by the share the canary had.
    assert traffic["failed"] == 0, traffic
    assert 0 < traffic["server_errors"] <= step["share"] * traffic["sent"], traffic


def test_rollback_during_a_canary_aborts_it(stable, healthy, k8s_env, tmp_path):
    slow = _environments(tmp_path, pause_s=120)
    env = dict(k8s_env, SHIPYARD_ENVIRONMENTS=str(slow))
    assert run_cli("deploy", "production", "--image", stable, env=env, timeout=600).returncode == 0
    _staging_runs_verified(healthy, env)
    promoting = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "promote"],
                                 cwd=PROJECT_ROOT, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while "canary" not in _serving("fraud-production") and time.monotonic() < deadline:
            assert promoting.poll() is None, promoting.stdout.read() if promoting.stdout else ""
            time.sleep(2)
        assert "canary" in _serving("fraud-production")
        rolled = run_cli("rollback", "production", env=env, timeout=600)
        said, _ = promoting.communicate(timeout=120)
    finally:
        if promoting.poll() is None:
            promoting.kill()
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "aborted the canary" in rolled.stdout
    assert promoting.returncode == 1 and "aborted by" in said, said
    assert _serving("fraud-production") == {"stable": {stable}}
    kinds = [(r["kind"], r["outcome"]) for r in _history(env)[-2:]]
    assert kinds == [("promote", "aborted"), ("rollback", "succeeded")]


def test_a_step_waits_for_late_traffic_and_one_without_enough_is_not_judged(stable, healthy, k8s_env, tmp_path):
    """Step 1 gets its traffic only once it is waiting for it (late, inside max_wait_s): it passes.
    The traffic then stops; step 2 waits max_wait_s and aborts as not judged, not as failed."""
    env = dict(k8s_env, SHIPYARD_ENVIRONMENTS=str(_environments(tmp_path, pause_s=5, max_wait_s=45)))
    assert run_cli("deploy", "production", "--image", stable, env=env, timeout=600).returncode == 0
    _staging_runs_verified(healthy, env)
    said: list[str] = []
    promoting = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "promote"], cwd=PROJECT_ROOT,
                                 env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=lambda: said.extend(promoting.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()

    def until(text: str, limit_s: float = 300) -> None:
        deadline = time.monotonic() + limit_s
        while not any(text in line for line in said) and promoting.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert any(text in line for line in said), "".join(said)

    sending = None
    try:
        until("step 1/2: waiting for traffic")
        # Ctrl-C as in a terminal: a test run started in the background (`make test &`, a CI runner)
        # has SIGINT ignored, a child inherits that, and it would never hear the signal below.
        sending = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "traffic", "production", "--rps", "40",
                                    "--duration", "300"], cwd=PROJECT_ROOT, env=dict(os.environ, **env),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        until("step 1/2: passed")
        sending.send_signal(signal.SIGINT)  # the traffic CLI removes its Job on the way out
        sending.wait(timeout=120)
        promoting.wait(timeout=600)
    finally:
        for proc in (sending, promoting):
            if proc is not None and proc.poll() is None:
                proc.kill()
    reader.join(timeout=10)
    out = "".join(said)
    assert promoting.returncode == 1, out
    assert "step 2/2: waiting for traffic" in out and "step 2/2: NOT JUDGED: not enough traffic" in out, out
    assert _serving("fraud-production") == {"stable": {stable}}  # the canary is gone, stable untouched
    release = _history(env)[-1]
    assert release["outcome"] == "aborted" and "not enough traffic" in release["note"], release
    first, second = release["canary"]["steps"]
    assert first["passed"] and first["seconds"] > 5 and first["measured"]["requests"] >= 40, first  # it waited
    assert not second["passed"] and second["not_enough_traffic"].startswith("not enough traffic: "), second
    assert second["seconds"] >= 5 + 45 and second["measured"]["requests"] < 40, second
    assert "34%:ok 50%:no-traffic" in run_cli("history", "production", env=env).stdout
