"""shipyard/cluster.py against the local cluster's real API server and kubelet: the calls every
target makes (read, list, create, patch, delete, watch, logs, the API server's proxy),
with the failures a release manager meets told by what went wrong, not by a command's words."""

from __future__ import annotations

import os

import pytest

from shipyard import cluster
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster
NS = f"shipyard-client-{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def namespace(cluster_up):
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    kubectl("create", "namespace", NS)
    yield NS
    kubectl("delete", "namespace", NS, "--wait=false", check=False)
    if old is None:
        os.environ.pop("KUBECONFIG")
    else:
        os.environ["KUBECONFIG"] = old


def sleeper(name: str, image: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {"test": name}},
            "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", "echo started; sleep 300"]}]}}


def ready(pods: list[dict]) -> bool | None:
    return True if pods and all(any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p.get("status", {}).get("conditions", [])) for p in pods) else None


@pytest.fixture(scope="module")
def pod(built_image) -> str:
    cluster.create(sleeper("shell", built_image.reference))
    assert cluster.watch_until("the shell pod", cluster.core().list_namespaced_pod, NS, ready, 120,
                               field_selector="metadata.name=shell"), "the shell pod did not become ready"
    return "shell"


def test_get_and_list_give_the_servers_json_and_none_for_what_is_absent(pod):
    got = cluster.get("Pod", pod, NS)
    assert got["metadata"]["name"] == pod and got["kind"] == "Pod"
    assert got["metadata"]["creationTimestamp"].endswith("Z")  # the server's own JSON, as kubectl prints it
    assert [p["metadata"]["name"] for p in cluster.list_objects("Pod", NS, labels=f"test={pod}")] == [pod]
    assert cluster.list_objects("Pod", NS, labels="test=nobody") == []
    assert cluster.get("Deployment", "nothing-here", NS) is None
    assert cluster.get("Namespace", NS)["metadata"]["name"] == NS


def test_logs_of_a_pod_and_of_a_missing_one(pod):
    assert "started" in cluster.logs(NS, pod)
    assert cluster.logs(NS, "no-such-pod") == ""


def test_patch_then_delete_by_label_and_wait_until_gone(built_image):
    for name in ("one", "two"):
        cluster.create(sleeper(name, built_image.reference, {"group": "pair"}))
    cluster.patch("Pod", "one", NS, {"metadata": {"annotations": {"shipyard.dev/note": "patched"}}})
    assert cluster.get("Pod", "one", NS)["metadata"]["annotations"]["shipyard.dev/note"] == "patched"
    names = cluster.delete("Pod", NS, labels="group=pair")
    assert sorted(names) == ["one", "two"]
    assert cluster.wait_gone("Pod", NS, names, 120)
    assert cluster.list_objects("Pod", NS, labels="group=pair") == []
    # Nothing left to delete or to wait for: neither is an error, and neither waits.
    assert cluster.delete("Pod", NS, "one") == ["one"]
    assert cluster.wait_gone("Pod", NS, ["one"], 1)


def test_a_watch_sees_a_state_that_holds_before_it_starts(pod):
    # The pod has been ready since the fixture: the first list answers, no change is needed.
    assert cluster.watch_until("the shell pod", cluster.core().list_namespaced_pod, NS, ready, 5,
                               field_selector=f"metadata.name={pod}") is True


def test_an_invalid_object_is_refused_naming_the_field(pod):
    bad = sleeper("Bad_Name", "busybox")
    with pytest.raises(cluster.ApiError, match=r"pod Bad_Name in namespace .*rejected as invalid.*metadata.name") as err:
        cluster.create(bad)
    assert err.value.status == cluster.UNPROCESSABLE


def test_a_port_nothing_serves_through_the_api_servers_proxy_is_named(pod):
    # This pod only sleeps: the refusal is an answer from the API server naming pod and port, not
    # a hang (what the proxy returns when something serves is the canary's and traffic's tests).
    with pytest.raises(cluster.ApiError, match=r"pod shell in namespace .*port 3000"):
        cluster.proxy_get(NS, "Pod", pod, 3000, "metrics")
