"""The local cluster built from upstream components, exercised for real (marker `cluster`).

`make test` brings the cluster up first (scripts/cluster/up); these tests deploy the project's
image pulled by digest from the loopback registry, reach it only through port-forward on
127.0.0.1, check RBAC, self-healing, and that `down` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VALID_TRANSACTION, free_port
from tests.integration.conftest import CLUSTER, KUBECTL, cluster_script as script, kubectl, wait_ready


pytestmark = pytest.mark.cluster
# One namespace per session: an earlier, aborted run may still be terminating its own.
NS = f"shipyard-itest-{os.getpid()}"


@pytest.fixture(scope="module")
def cluster(cluster_up):
    kubectl("create", "namespace", NS)
    yield
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def deployment(image: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scorer", "namespace": NS, "labels": {"app.kubernetes.io/name": "scorer"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "scorer"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "scorer"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "scorer", "image": image, "ports": [{"containerPort": 3000}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 3000}, "periodSeconds": 2},
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def scorer(cluster, built_image):
    kubectl("apply", "-f", "-", input=json.dumps(deployment(built_image.reference)))
    result = kubectl("-n", NS, "rollout", "status", "deployment/scorer", "--timeout=300s", check=False, timeout=320)
    if result.returncode != 0:
        print(kubectl("-n", NS, "describe", "pods", check=False).stdout[-4000:])
    assert result.returncode == 0, result.stderr
    return built_image


def pods() -> list[dict]:
    items = json.loads(kubectl("-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=scorer", "-o", "json").stdout)
    return items["items"]


def test_node_is_ready(cluster):
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 1
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.34.")


def test_deployment_runs_the_image_by_digest(scorer):
    [pod] = [p for p in pods() if p["status"]["phase"] == "Running"]
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    assert status["imageID"].endswith(scorer.reference.split("@")[1])


def test_request_through_port_forward_is_answered(scorer):
    port = free_port()
    forward = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(CLUSTER / "admin.kubeconfig"), "-n", NS,
                                "port-forward", "deployment/scorer", f"{port}:3000", "--address", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", limit_s=60)
        resp = httpx.post(f"http://127.0.0.1:{port}/score", json=VALID_TRANSACTION, timeout=30)
        assert resp.status_code == 200 and resp.json()["model_version"].startswith("fraud_detector:")
        bad = httpx.post(f"http://127.0.0.1:{port}/score", json={**VALID_TRANSACTION, "amount": -1}, timeout=30)
        assert bad.status_code == 400
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_rbac_denies_what_a_service_account_was_not_granted(cluster):
    kubectl("-n", NS, "create", "serviceaccount", "reader", check=False)
    kubectl("-n", NS, "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", check=False)
    kubectl("-n", NS, "create", "rolebinding", "reader-pods", "--role=pod-reader",
            f"--serviceaccount={NS}:reader", check=False)
    token = kubectl("-n", NS, "create", "token", "reader", "--duration=10m").stdout.strip()
    as_reader = ["--token", token, "--kubeconfig", "/dev/null", "--server", "https://127.0.0.1:6443",
                 "--certificate-authority", str(CLUSTER / "pki" / "ca.crt")]
    allowed = subprocess.run([str(KUBECTL), *as_reader, "-n", NS, "get", "pods"], capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    denied = subprocess.run([str(KUBECTL), *as_reader, "-n", NS, "get", "secrets"], capture_output=True, text=True)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    other_ns = subprocess.run([str(KUBECTL), *as_reader, "-n", "default", "get", "pods"], capture_output=True, text=True)
    assert other_ns.returncode != 0 and "Forbidden" in other_ns.stderr


def test_a_killed_pod_is_replaced(scorer):
    [old] = [p["metadata"]["name"] for p in pods() if p["status"]["phase"] == "Running"]
    kubectl("-n", NS, "delete", "pod", old, "--wait=false")
    deadline = time.monotonic() + 240  # catches a hang only
    while time.monotonic() < deadline:
        fresh = [p for p in pods() if p["metadata"]["name"] != old and p["status"]["phase"] == "Running"
                 and all(c["ready"] for c in p["status"].get("containerStatuses", []))]
        if fresh:
            return
        time.sleep(1)
    pytest.fail(f"no replacement for {old} became ready")


def _our_mounts() -> list[str]:
    root = str(CLUSTER) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(root)]


def test_down_leaves_no_process_or_mount_behind(cluster, scorer):
    pids = {p.stem: int(p.read_text()) for p in (CLUSTER / "pids").glob("*.pid")}
    assert set(pids) >= {"containerd", "etcd", "kube-apiserver", "kubelet"}
    assert _our_mounts(), "a running pod should have mounts under the cluster state"
    result = script("down")
    assert result.returncode == 0, result.stderr
    try:
        alive = [name for name, pid in pids.items() if Path(f"/proc/{pid}").exists()]
        assert alive == []
        shims = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(CLUSTER) in _cmdline(p)]
        assert shims == []
        assert _our_mounts() == []
        assert subprocess.run(["ip", "link", "show", "shipyard0"], capture_output=True).returncode != 0
        assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
    finally:
        assert script("up").returncode == 0  # leave the cluster as the session found it


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
