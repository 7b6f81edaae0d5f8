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


# --- the host firewall: dockerd sets FORWARD's policy to DROP; pods must still reach each other

SERVICES_STATE = Path(os.environ.get("SHIPYARD_CACHE", Path.home() / ".cache" / "shipyard")) / "services"
# A refused connection is retried for a few seconds: kube-proxy answers a Service whose endpoints
# it has not synced yet with a REJECT. A dropped packet (the firewall) is a timeout and fails.
PROBE = """
import sys, time, urllib.error, urllib.request
for url in sys.argv[1:]:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
                print(url, resp.status, flush=True)
                break
        except urllib.error.URLError as exc:
            # Refused: nothing listens yet; unreachable: kube-proxy has not yet written the rules of
            # a Service made a moment ago (the Service range is unreachable until it has).
            refused = isinstance(exc.reason, ConnectionRefusedError) or getattr(exc.reason, "errno", 0) == 113
            if not refused or time.monotonic() > deadline:
                print(url, "failed:", exc.reason, flush=True)
                raise SystemExit(1)
            time.sleep(0.5)
"""


def _iptables(*args: str) -> str:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=True).stdout


def _forward_policy() -> str:
    return _iptables("-S", "FORWARD").splitlines()[0].split()[-1]  # "-P FORWARD DROP"


def _probe_from_a_pod(image: str, name: str, urls: list[str], program: str = PROBE) -> tuple[str, str]:
    """Runs PROBE (or `program`) in a pod of the scorer's image; returns (phase, log). Real pod, real bridge."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "probe", "image": image, "command": ["python", "-c", program, *urls],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        },
    }
    kubectl("-n", NS, "delete", "pod", name, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    deadline = time.monotonic() + 180  # catches a hang only
    phase = ""
    while time.monotonic() < deadline:
        phase = json.loads(kubectl("-n", NS, "get", "pod", name, "-o", "json").stdout)["status"].get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    return phase, kubectl("-n", NS, "logs", name, check=False).stdout


def _assert_pods_reach_pod_and_service(image: str, probe_name: str) -> None:
    kubectl("-n", NS, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "scorer", "namespace": NS},
        "spec": {"selector": {"app.kubernetes.io/name": "scorer"}, "ports": [{"port": 3000, "targetPort": 3000}]}}))
    [target] = [p for p in pods() if p["status"]["phase"] == "Running" and p["metadata"].get("deletionTimestamp") is None]
    service_ip = json.loads(kubectl("-n", NS, "get", "service", "scorer", "-o", "json").stdout)["spec"]["clusterIP"]
    urls = [f"http://{target['status']['podIP']}:3000", f"http://{service_ip}:3000"]
    phase, log = _probe_from_a_pod(image, probe_name, urls)
    assert phase == "Succeeded", f"a pod could not reach {urls} (phase {phase}): {log[-1500:]}"
    assert [line.split()[1] for line in log.splitlines()] == ["200", "200"], log


def test_pods_reach_pods_and_services_although_dockerd_drops_forwarding(scorer):
    """make test starts dockerd before the cluster: its DROP policy must not cut the pods off."""
    assert subprocess.run(["docker", "info"], capture_output=True).returncode == 0, "dockerd should be running"
    assert _forward_policy() == "DROP", "dockerd sets FORWARD to DROP; without it this test proves nothing"
    assert "SHIPYARD-FORWARD" in _iptables("-S", "FORWARD")
    _assert_pods_reach_pod_and_service(scorer.reference, "probe-docker-first")


def test_pods_reach_each_other_when_dockerd_starts_after_the_cluster(scorer):
    """The other start order: dockerd (re)started while the cluster runs re-asserts its rules."""
    pid = int((SERVICES_STATE / "dockerd.pid").read_text())
    os.kill(pid, 15)
    deadline = time.monotonic() + 60  # catches a hang only
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop"
    # Back to a fresh boot's view (forwarding off, FORWARD accepting): dockerd then turns forwarding
    # on and sets FORWARD's policy to DROP as it starts, while the cluster and its chain are there.
    _iptables("-P", "FORWARD", "ACCEPT")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
    up = subprocess.run([str(Path(__file__).parents[2] / "scripts" / "image" / "up")], capture_output=True,
                        text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _forward_policy() == "DROP"
    _assert_pods_reach_pod_and_service(scorer.reference, "probe-docker-after")


RESOLVE = """
import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, socket.gethostbyname(name), flush=True)
    except OSError as exc:
        print(name, "unresolved:", exc, flush=True)
"""


def test_pods_find_services_by_name_in_every_namespace_through_the_cluster_dns(scorer):
    """CoreDNS, built from its module, answers for cluster.local: short names in the pod's own
    namespace, qualified names across namespaces, each the Service's own cluster IP; and a pod
    reaches a Service by its name."""
    _assert_pods_reach_pod_and_service(scorer.reference, "probe-before-dns")  # creates Service `scorer`

    def cluster_ip(namespace: str, name: str) -> str:
        return json.loads(kubectl("-n", namespace, "get", "service", name, "-o", "json").stdout)["spec"]["clusterIP"]

    expected = {"scorer": cluster_ip(NS, "scorer"), f"scorer.{NS}": cluster_ip(NS, "scorer"),
                f"scorer.{NS}.svc.cluster.local": cluster_ip(NS, "scorer"),
                "kube-dns.kube-system": cluster_ip("kube-system", "kube-dns"),
                "kubernetes.default.svc.cluster.local": cluster_ip("default", "kubernetes")}
    phase, log = _probe_from_a_pod(scorer.reference, "probe-dns", list(expected), program=RESOLVE)
    assert phase == "Succeeded", log
    assert dict(line.split(" ", 1) for line in log.splitlines()) == expected, log
    phase, log = _probe_from_a_pod(scorer.reference, "probe-by-name", ["http://scorer:3000", f"http://scorer.{NS}:3000"])
    assert phase == "Succeeded" and [line.split()[1] for line in log.splitlines()] == ["200", "200"], log


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=60)
    print("connected")
except OSError as exc:
    print(type(exc).__name__, exc.errno, flush=True)
"""


def test_an_address_of_the_service_range_no_service_owns_is_refused_at_once(scorer):
    """Service addresses never leave the machine: one kube-proxy has no rules for (a Service made
    a moment ago, or none at all) is unreachable here, not routed out of the default gateway,
    where a connection hung for minutes and a suite's locust worker never reached its master."""
    phase, log = _probe_from_a_pod(scorer.reference, "probe-no-service", ["10.96.255.254"], program=CONNECT)
    assert phase == "Succeeded", log
    assert log.split() == ["OSError", "113"], log  # EHOSTUNREACH, from the route; a timeout would say TimeoutError


def test_the_metrics_api_serves_node_and_pod_usage(scorer):
    """metrics-server, built from its module, behind the aggregation layer: `kubectl top` works
    for nodes and pods (what the HorizontalPodAutoscaler reads)."""
    nodes = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)["items"]
    assert len(nodes) == 1 and nodes[0]["usage"]["cpu"] and nodes[0]["usage"]["memory"]
    deadline = time.monotonic() + 120  # a new pod is listed after metrics-server's next scrapes; catches a hang only
    while True:
        top = kubectl("-n", NS, "top", "pods", "--no-headers", check=False)
        if top.returncode == 0 and "scorer-" in top.stdout:
            break
        assert time.monotonic() < deadline, top.stdout + top.stderr
        time.sleep(3)
    name, cpu, memory = top.stdout.split()[:3]
    assert cpu.endswith("m") and memory.endswith("Mi"), top.stdout


def test_status_reports_the_firewall_metrics_and_network_policy(cluster):
    result = script("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "firewall: FORWARD accepts the cluster's traffic" in result.stdout
    assert "metrics: the resource metrics API answers" in result.stdout
    assert "network policy: enforced (kube-network-policies on nfqueue 98)" in result.stdout


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
        assert "10.96.0.0/16" not in subprocess.run(["ip", "route", "show", "type", "unreachable"],
                                                    capture_output=True, text=True).stdout
        assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
        assert "SHIPYARD-FORWARD" not in _iptables("-S")
    finally:
        assert script("up").returncode == 0  # leave the cluster as the session found it


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
