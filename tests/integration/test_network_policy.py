"""The project's NetworkPolicies, enforced by the cluster (kube-network-policies on nfqueue): real
TCP connections from probe pods in staging and production to the other namespace's scorer and
broker, to a port the scorer does not serve, and from a pod whose egress the namespace denies.

A denied connection times out (its SYN is dropped); an allowed one connects. "refused" would mean
the packet reached the pod, so it counts as not isolated."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster
K8S = {"KUBECONFIG": str(KUBECONFIG)}
NAMESPACES = {"staging": "fraud-staging", "production": "fraud-production"}
PROBE_LABEL = "shipyard.test/isolation-probe"
# Connects to each (host, port) once, 3 s each: "open", "refused", "timeout" or the error.
PROBE = """
import json, socket, sys
def probe(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"
print(json.dumps([probe(host, port) for host, port in json.loads(sys.argv[1])]))
"""
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}


def probe_pod(name: str, namespace: str, image: str, egress_open: bool) -> list[dict]:
    """A pod that only waits (bounded), to connect from; with egress_open, a policy that lets it
    connect anywhere, so what stops it is the destination's ingress policy, not its own egress."""
    labels = {PROBE_LABEL: name}
    objects = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 900, "automountServiceAccountToken": False,
                         "terminationGracePeriodSeconds": 0,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                             "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                                         "command": ["python", "-c", "import time; time.sleep(900)"],
                                         "securityContext": RESTRICTED}]}}]
    if egress_open:
        objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels},
                        "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Egress"], "egress": [{}]}})
    return objects


@pytest.fixture(scope="module")
def probes(cluster_up, built_image):
    """Both environments deployed; in each, an "open" probe (egress allowed) and in staging a
    "sealed" one (only the namespace's default deny)."""
    for env in NAMESPACES:
        result = run_cli("deploy", env, "--target", "kubernetes", "--image", built_image.reference, env=K8S,
                         timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    pods = [("open", "staging", True), ("open", "production", True), ("sealed", "staging", False)]
    objects = [o for kind, env, egress in pods for o in probe_pod(f"probe-{kind}", NAMESPACES[env],
                                                                   built_image.reference, egress)]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    try:
        for _, env, _ in pods:
            kubectl("-n", NAMESPACES[env], "wait", "pod", "-l", PROBE_LABEL, "--for=condition=Ready", "--timeout=120s")
        yield
    finally:
        for namespace in NAMESPACES.values():
            kubectl("-n", namespace, "delete", "pod,networkpolicy", "-l", PROBE_LABEL, "--wait=false", check=False)


def connect(namespace: str, pod: str, targets: list[tuple[str, int]]) -> list[str]:
    result = kubectl("-n", namespace, "exec", pod, "--", "python", "-c", PROBE, json.dumps(targets), timeout=120)
    return json.loads(result.stdout)


def service(name: str, env: str) -> str:
    return f"{name}.{NAMESPACES[env]}.svc.cluster.local"


def scorer_pod_ip(env: str) -> str:
    pods = json.loads(kubectl("-n", NAMESPACES[env], "get", "pods", "-l", "app.kubernetes.io/component=api",
                              "-o", "json").stdout)["items"]
    return next(p["status"]["podIP"] for p in pods if p["status"].get("podIP"))


@pytest.mark.parametrize("source,target", [("staging", "production"), ("production", "staging")])
def test_a_namespace_reaches_its_own_scorer_but_not_the_other_namespaces_scorer_or_any_broker(probes, source, target):
    results = connect(NAMESPACES[source], "probe-open", [
        (service("fraud-scorer", source), 80), (service("fraud-scorer", target), 80),
        (service("redis", source), 6379), (service("redis", target), 6379)])
    # Its own scorer on its port: allowed. The other namespace's scorer: only its own pods may
    # call it. Either broker: only stream workers may.
    assert results == ["open", "timeout", "timeout", "timeout"]


def test_the_scorer_accepts_connections_only_on_its_port(probes):
    ip = scorer_pod_ip("staging")
    port = int(kubectl("-n", NAMESPACES["staging"], "get", "pods", "-l", "app.kubernetes.io/component=api", "-o",
                       "jsonpath={.items[0].spec.containers[0].ports[0].containerPort}").stdout)
    # Nothing listens on port+1: without the policy the pod would answer "refused".
    assert connect(NAMESPACES["staging"], "probe-open", [(ip, port), (ip, port + 1)]) == ["open", "timeout"]


def test_a_pod_the_namespace_gives_no_egress_reaches_nothing(probes):
    cluster_ip = kubectl("-n", NAMESPACES["staging"], "get", "service", "fraud-scorer", "-o",
                         "jsonpath={.spec.clusterIP}").stdout
    assert connect(NAMESPACES["staging"], "probe-sealed", [(cluster_ip, 80), (scorer_pod_ip("staging"), 80)]) \
        == ["timeout", "timeout"]


def test_stream_workers_reach_their_own_broker_only(probes):
    for env, other in (("staging", "production"), ("production", "staging")):
        worker = kubectl("-n", NAMESPACES[env], "get", "pods", "-l", "app.kubernetes.io/component=stream-worker",
                         "-o", "jsonpath={.items[0].metadata.name}").stdout
        results = connect(NAMESPACES[env], worker, [(service("redis", env), 6379), (service("redis", other), 6379)])
        assert results == ["open", "timeout"], env
