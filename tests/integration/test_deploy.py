"""`shipyard deploy` on the local cluster: real namespaces, real rollouts, real failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import PROJECT_ROOT, VALID_TRANSACTION, free_port, run_cli
from tests.environments import copy_environments
from tests.integration.conftest import KUBECONFIG, KUBECTL, kubectl, wait_ready

pytestmark = pytest.mark.cluster
K8S = {"KUBECONFIG": str(KUBECONFIG)}


def deploy(env: str, image: str, *extra: str, envs: Path | None = None) -> subprocess.CompletedProcess:
    extra_env = {**K8S, **({"SHIPYARD_ENVIRONMENTS": str(envs)} if envs else {})}
    return run_cli("deploy", env, "--target", "kubernetes", "--image", image, *extra, env=extra_env, timeout=600)


def status(env: str) -> dict:
    result = run_cli("status", env, "--target", "kubernetes", "-o", "json", env=K8S)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def running_images(namespace: str) -> set[str]:
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=api",
                              "-o", "json").stdout)["items"]
    return {p["spec"]["containers"][0]["image"] for p in pods
            if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]
            and all(c["ready"] for c in p["status"].get("containerStatuses", []))}


def answer_through_port_forward(namespace: str) -> int:
    port = free_port()
    forward = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", namespace, "port-forward",
                                "service/fraud-scorer", f"{port}:80", "--address", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", limit_s=60)
        return httpx.post(f"http://127.0.0.1:{port}/score", json=VALID_TRANSACTION, timeout=30).status_code
    finally:
        forward.terminate()
        forward.wait(timeout=10)


@pytest.fixture(scope="module")
def deployed(cluster_up, built_image, built_bento):
    for env in ("staging", "production"):
        result = deploy(env, built_image.reference)
        assert result.returncode == 0, result.stdout + result.stderr
    return built_image


@pytest.fixture(scope="module")
def second_image(deployed, cli_env) -> str:
    """Digest B: the same service rebuilt (a new Bento version), pushed as a new image."""
    assert run_cli("build", env=cli_env).returncode == 0
    result = run_cli("image", "build", env=cli_env, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != deployed.reference
    return result.stdout.strip()


@pytest.fixture(scope="module")
def broken_image(deployed) -> str:
    """A real image in the registry whose container cannot start (no such entrypoint)."""
    registry_repo = deployed.reference.split("@")[0]
    tag = f"{registry_repo}:broken-{os.getpid()}"
    empty = subprocess.run(["tar", "-c", "--files-from", "/dev/null"], capture_output=True, check=True).stdout
    subprocess.run(["docker", "import", "--change", 'ENTRYPOINT ["/no/such/binary"]', "-", tag],
                   input=empty, capture_output=True, check=True)
    subprocess.run(["docker", "push", tag], capture_output=True, check=True)
    digests = subprocess.run(["docker", "image", "inspect", "-f", "{{index .RepoDigests 0}}", tag],
                             capture_output=True, text=True, check=True).stdout.strip()
    return digests


def test_both_environments_serve_the_digest(deployed, built_bento):
    for env, ns in (("staging", "fraud-staging"), ("production", "fraud-production")):
        st = status(env)
        assert st["state"] == "ready" and st["image"] == deployed.reference and st["bento"] == built_bento
        assert running_images(ns) == {deployed.reference}
        assert answer_through_port_forward(ns) == 200


def test_jobs_run_the_jobs_image_built_with_the_serving_image(deployed):
    cronjob = kubectl("-n", "fraud-staging", "get", "cronjob", "fraud-batch", "-o",
                      "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].image}").stdout
    worker = kubectl("-n", "fraud-staging", "get", "deployment", "stream-worker", "-o",
                     "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert cronjob == worker == deployed.jobs_reference != deployed.reference


def test_deploying_the_same_digest_again_changes_nothing(deployed):
    generation = kubectl("-n", "fraud-staging", "get", "deployment", "fraud-scorer", "-o",
                         "jsonpath={.metadata.generation}").stdout
    result = deploy("staging", deployed.reference)
    assert result.returncode == 0 and "(unchanged)" in result.stdout
    assert kubectl("-n", "fraud-staging", "get", "deployment", "fraud-scorer", "-o",
                   "jsonpath={.metadata.generation}").stdout == generation


def test_dry_run_changes_nothing(deployed, broken_image):
    generation = kubectl("-n", "fraud-staging", "get", "deployment", "fraud-scorer", "-o",
                         "jsonpath={.metadata.generation}").stdout
    result = deploy("staging", broken_image, "--dry-run")
    assert result.returncode == 0 and broken_image.split("@")[1] in result.stderr  # the diff shows the new digest
    assert running_images("fraud-staging") == {deployed.reference}
    assert kubectl("-n", "fraud-staging", "get", "deployment", "fraud-scorer", "-o",
                   "jsonpath={.metadata.generation}").stdout == generation


def test_namespaces_enforce_the_restricted_pod_security_standard(deployed):
    labels = json.loads(kubectl("get", "namespace", "fraud-staging", "-o", "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # A pod without the restricted profile's settings (non-root, no escalation, seccomp, caps dropped).
    rejected = kubectl("-n", "fraud-staging", "run", "unhardened", "--image", deployed.reference, check=False)
    assert rejected.returncode != 0 and 'violates PodSecurity "restricted' in rejected.stderr


@pytest.mark.parametrize("verb,resource,namespace,allowed", [
    ("patch", "deployments", "fraud-staging", "yes"),
    ("create", "pods --subresource=portforward", "fraud-staging", "yes"),
    ("get", "secrets", "fraud-staging", "no"),
    ("create", "rolebindings", "fraud-staging", "no"),
    ("patch", "deployments", "fraud-production", "no"),
])
def test_deployer_rbac_is_limited_to_its_namespace(deployed, verb, resource, namespace, allowed):
    answer = kubectl("auth", "can-i", verb, *resource.split(), "-n", namespace,
                     "--as", "system:serviceaccount:fraud-staging:shipyard-deployer", check=False).stdout.strip()
    assert answer == allowed


def test_broken_image_fails_with_the_reason_and_old_pods_keep_serving(deployed, broken_image):
    result = deploy("staging", broken_image, "--timeout", "120")
    assert result.returncode == 1
    assert "rollout of" in result.stderr and "failed" in result.stderr
    assert any(r in result.stderr for r in ("RunContainerError", "CrashLoopBackOff", "CreateContainerError",
                                              "StartError", "restarted"))
    assert "previous ReplicaSet keeps serving" in result.stderr
    assert deployed.reference in running_images("fraud-staging")
    assert answer_through_port_forward("fraud-staging") == 200
    assert deploy("staging", deployed.reference).returncode == 0  # back to the good digest


def test_rolling_update_under_load_fails_no_request(deployed, second_image):
    """Digest A -> B on staging while requests flow to whatever the Service's endpoints are."""
    import threading

    from tests.integration.endpoint_client import EndpointFollowingClient

    assert deploy("staging", deployed.reference).returncode == 0
    done = threading.Event()
    with EndpointFollowingClient("fraud-staging") as client:
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(tally=client.hammer(VALID_TRANSACTION, done)))
        worker.start()
        time.sleep(3)
        rollout = deploy("staging", second_image)
        time.sleep(8)  # past the old pod's preStop and termination
        done.set()
        worker.join(timeout=60)
    tally = result["tally"]
    assert rollout.returncode == 0, rollout.stderr
    assert running_images("fraud-staging") == {second_image}
    assert tally.sent > 100 and len(tally.pods_used) >= 2, tally
    assert tally.failed == 0, tally.failures[:10]
    print(f"rolling update: {tally.sent} requests over {len(tally.pods_used)} pods, {tally.failed} failed")
    assert deploy("staging", deployed.reference).returncode == 0  # back to digest A for the tests after


def _overlay(envs: Path, name: str, namespace: str, extra_patch: str = "") -> None:
    folder = envs / name
    folder.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(PROJECT_ROOT / "k8s" / "base", folder)
    patches = "\n".join(["patches:", extra_patch] if extra_patch else [])
    (folder / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n"
        f"resources:\n  - {base}\n  - namespace.yaml\n{patches}\n")
    shutil.copy(PROJECT_ROOT / "environments" / "staging" / "namespace.yaml", folder / "namespace.yaml")
    text = (folder / "namespace.yaml").read_text().replace("fraud-staging", namespace)
    (folder / "namespace.yaml").write_text(text)
    (folder / "environment.yaml").write_text(f"name: {name}\ntarget: kubernetes\nnamespace: {namespace}\n")


def _scale_patch(hpa_max: int, *deployment_ops: str) -> str:
    """Overlay patches: the scorer at one pod (plus `deployment_ops`), its HPA between 1 and hpa_max."""
    ops = "\n".join(f"      - {op}" for op in ("{op: replace, path: /spec/replicas, value: 1}", *deployment_ops))
    return (f"  - target: {{kind: Deployment, name: fraud-scorer}}\n    patch: |-\n{ops}\n"
            "  - target: {kind: HorizontalPodAutoscaler, name: fraud-scorer}\n    patch: |-\n"
            "      - {op: replace, path: /spec/minReplicas, value: 1}\n"
            f"      - {{op: replace, path: /spec/maxReplicas, value: {hpa_max}}}")


BAD_PROBE = _scale_patch(
    1, "{op: replace, path: /spec/template/spec/containers/0/readinessProbe/httpGet/path, value: /never-ready}",
    "{op: replace, path: /spec/template/spec/containers/0/startupProbe/httpGet/path, value: /never-ready}",
    "{op: replace, path: /spec/template/spec/containers/0/startupProbe/failureThreshold, value: 40}")
ONE_REPLICA = _scale_patch(1)


def test_probe_that_never_passes_fails_and_old_pods_keep_serving(deployed, tmp_path):
    namespace = f"fraud-probe-{os.getpid()}"
    _overlay(tmp_path, "probe", namespace, ONE_REPLICA)
    try:
        assert deploy("probe", deployed.reference, envs=tmp_path).returncode == 0
        _overlay(tmp_path, "probe", namespace, BAD_PROBE)
        result = deploy("probe", deployed.reference, "--timeout", "45", envs=tmp_path)
        assert result.returncode == 1 and "not ready within 45s" in result.stderr, result.stderr
        assert "Unhealthy" in result.stderr  # the probe's own event is quoted
        assert deployed.reference in running_images(namespace)
        assert answer_through_port_forward(namespace) == 200
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_parity_rejects_a_production_only_change_and_allows_scale(tmp_path):
    for name in ("staging", "production"):
        shutil.copytree(PROJECT_ROOT / "environments" / name, tmp_path / name)
        text = (tmp_path / name / "kustomization.yaml").read_text()
        base = os.path.relpath(PROJECT_ROOT / "k8s" / "base", tmp_path / name)
        (tmp_path / name / "kustomization.yaml").write_text(text.replace("../../k8s/base", base))
    env = {"SHIPYARD_ENVIRONMENTS": str(tmp_path)}
    allowed = run_cli("diff", "staging", "production", env=env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "spec.replicas" in allowed.stdout
    with (tmp_path / "production" / "kustomization.yaml").open("a") as f:
        f.write("  - target: {kind: Deployment, name: fraud-scorer}\n    patch: |-\n"
                "      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: DEBUG, value: '1'}}\n")
    rejected = run_cli("diff", "staging", "production", env=env)
    assert rejected.returncode == 1
    assert "spec.template.spec.containers[0].env[3].name" in rejected.stdout and "NO" in rejected.stdout


def test_unknown_environment_is_exit_2(deployed):
    result = deploy("qa", deployed.reference)
    assert result.returncode == 2 and "unknown environment 'qa'" in result.stderr


def test_malformed_environment_is_exit_2(deployed, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "environment.yaml").write_text("name: bad\ntarget: kubernetes\n")
    result = deploy("bad", deployed.reference, envs=tmp_path)
    assert result.returncode == 2 and "target kubernetes needs a namespace" in result.stderr


def test_digest_missing_from_the_registry_is_refused_before_applying(deployed):
    missing = deployed.reference.split("@")[0] + "@sha256:" + "0" * 64
    result = deploy("staging", missing)
    assert result.returncode == 1 and "has no fraud-scorer@sha256:" in result.stderr
    assert running_images("fraud-staging") == {deployed.reference}


def test_unreachable_cluster_is_a_clear_error(deployed, tmp_path):
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(KUBECONFIG.read_text().replace("https://127.0.0.1:6443", f"https://127.0.0.1:{free_port()}"))
    result = run_cli("deploy", "staging", "--target", "kubernetes", "--image", deployed.reference,
                     env={"KUBECONFIG": str(dead)}, timeout=120)
    assert result.returncode == 1 and "cannot reach the cluster" in result.stderr and "make cluster-up" in result.stderr


def test_promotion_on_kubernetes_moves_the_verified_digest_with_its_evidence(deployed, tmp_path):
    """staging -> production on the cluster: verdict and releases are ConfigMaps, the lock a Lease.
    The project's own overlays with a test environment's gates (tests/environments.py)."""
    envs = copy_environments(PROJECT_ROOT / "environments", tmp_path)
    k8s = {"KUBECONFIG": str(KUBECONFIG), "SHIPYARD_ENVIRONMENTS": str(envs)}
    assert deploy("staging", deployed.reference, envs=envs).returncode == 0
    verified = run_cli("verify", "staging", "--target", "kubernetes", "--short", env=k8s, timeout=900)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = kubectl("-n", "fraud-staging", "get", "configmaps", "-l", "shipyard.dev/record=verdict", "-o", "name").stdout
    assert "configmap/shipyard-verdict-" in records
    # A Lease held by someone else refuses the promotion, naming them.
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "shipyard-promotion", "namespace": "fraud-production"},
             "spec": {"holderIdentity": "bob@release-desk:7", "leaseDurationSeconds": 600,
                      "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}}
    kubectl("create", "-f", "-", input=json.dumps(lease))
    try:
        refused = run_cli("promote", "--target", "kubernetes", "--approve", env=k8s)
        assert refused.returncode == 1 and "held by bob@release-desk:7" in refused.stderr
    finally:
        kubectl("-n", "fraud-production", "delete", "lease", "shipyard-promotion")
    result = run_cli("promote", "--target", "kubernetes", "--approve", "--strategy", "replace", env=k8s, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert running_images("fraud-production") == {deployed.reference}
    history = json.loads(run_cli("history", "production", "--target", "kubernetes", "-o", "json", env=k8s).stdout)
    assert history[-1]["subject"] == deployed.reference and history[-1]["outcome"] == "succeeded"
    assert history[-1]["verdict"]["record"].startswith("configmap/shipyard-verdict-")


def test_dry_run_into_a_namespace_that_does_not_exist_lists_what_would_be_created(deployed, tmp_path):
    namespace = f"fraud-dry-{os.getpid()}"
    _overlay(tmp_path, "dry", namespace)
    result = deploy("dry", deployed.reference, "--dry-run", envs=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"namespace {namespace} does not exist yet" in result.stderr and "Deployment/fraud-scorer" in result.stderr
    assert kubectl("get", "namespace", namespace, check=False).returncode != 0



AUTOSCALED = _scale_patch(2)


def test_stress_on_the_cluster_records_the_autoscaler_scaling_out(deployed, tmp_path):
    """With the resource metrics API (metrics-server), the HPA scales the scorer out under the
    stress suite; the verdict records replicas over time and the time it took, and the report
    charts them. The load comes from the stress suite's generator pod in that namespace, through the Service.
    A namespace of its own, so the HPA starts from one pod with no history."""
    namespace = f"fraud-hpa-{os.getpid()}"
    _overlay(tmp_path, "hpa", namespace, AUTOSCALED)
    # Staging's stress suite, its overload held for 60 s at 1.5 x: the HPA decides within ~40 s
    # (metrics-server's first reading), and the pod it adds must start on cores the overload keeps
    # busy (30 s at 3 x ended before it was ready: make test, stop 41).
    staging = yaml.safe_load((PROJECT_ROOT / "environments" / "staging" / "environment.yaml").read_text())
    stress = dict(staging["suites"]["stress"], overload_s=60, overload_factor=1.5)
    with (tmp_path / "hpa" / "environment.yaml").open("a") as f:
        f.write(yaml.safe_dump({"suites": {"stress": stress}}, sort_keys=False))
    env = {**K8S, "SHIPYARD_ENVIRONMENTS": str(tmp_path)}
    try:
        assert deploy("hpa", deployed.reference, envs=tmp_path).returncode == 0
        result = run_cli("verify", "hpa", "--target", "kubernetes", "--suite", "smoke", "--suite", "stress",
                         "-o", "json", env=env, timeout=900)
        verdict = json.loads(result.stdout)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    [stress_suite] = [s for s in verdict["suites"] if s["name"] == "stress"]
    metrics, rows = stress_suite["metrics"], stress_suite["replicas"]
    assert metrics["replicas_start"] == 1 and metrics["replicas_max"] == 2, rows
    assert metrics["scale_out_s"] is not None and metrics["scale_out_s"] > 0
    assert rows[0]["ready"] == 1 and rows[-1]["ready"] == 2 and any(r["cpu_pct"] for r in rows)
    from shipyard.paths import state_dir

    assert "stress: replicas over time" in (state_dir() / "verdicts" / "hpa" / "latest.html").read_text()
    print(f"stress on the cluster: scaled out from 1 to 2 ready pods after {metrics['scale_out_s']} s")
