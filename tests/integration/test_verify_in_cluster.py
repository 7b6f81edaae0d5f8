"""`shipyard verify --target kubernetes` on the local cluster: every suite runs as pods in staging's
namespace against the Service by its DNS name (locust's master and its worker pods for load, the
open-loop generator's pod for stress), the requests reach both of staging's replicas through kube-proxy, the verdict says where
the load came from, and nothing the runs created is left behind. Staging here is the project's own
overlay and suites with a test environment's gates (tests/environments.py): the verdict must not
depend on how fast two shared cores were."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PROJECT_ROOT, run_cli
from tests.environments import copy_environments
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster
NAMESPACE = "fraud-staging"
SERVICE_URL = "http://fraud-scorer.fraud-staging.svc.cluster.local:80"


def answered_per_pod() -> dict[str, float]:
    """Each ready scorer pod's count of answered API requests (its own /metrics, read through the
    API server's pod proxy: the host sends no request to the pods)."""
    pods = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=api",
                              "-o", "json").stdout)["items"]
    counts = {}
    for pod in pods:
        if "deletionTimestamp" in pod["metadata"] or pod["status"].get("phase") != "Running":
            continue
        name = pod["metadata"]["name"]
        port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        text = kubectl("get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:{port}/proxy/metrics").stdout
        counts[name] = sum(sample.value for family in text_string_to_metric_families(text)
                           if family.name == "bentoml_service_request" for sample in family.samples
                           if sample.name.endswith("_total") and sample.labels.get("endpoint", "").startswith("/score"))
    return counts


@pytest.fixture(scope="module")
def k8s_env(tmp_path_factory) -> dict[str, str]:
    envs = copy_environments(PROJECT_ROOT / "environments", tmp_path_factory.mktemp("verify-envs"))
    return {"KUBECONFIG": str(KUBECONFIG), "SHIPYARD_ENVIRONMENTS": str(envs)}


@pytest.fixture(scope="module")
def verdict(cluster_up, built_image, k8s_env):
    deployed = run_cli("deploy", "staging", "--target", "kubernetes", "--image", built_image.reference, env=k8s_env,
                       timeout=600)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    before = answered_per_pod()
    assert len(before) >= 2, f"staging should serve with 2 replicas: {before}"
    result = run_cli("verify", "staging", "--target", "kubernetes", "--short", "-o", "json", env=k8s_env, timeout=1200)
    after = answered_per_pod()
    assert result.stdout, result.stderr
    return json.loads(result.stdout), result, before, after


def test_every_suite_ran_in_the_cluster_against_the_service(verdict):
    document, result, _, _ = verdict
    assert result.returncode == 0, result.stderr[-3000:]
    suites = {s["name"]: s for s in document["suites"]}
    assert set(suites) == {"smoke", "integration", "acceptance", "contract", "load", "stress"}
    assert all(s["status"] == "passed" for s in suites.values()), suites
    origins = document["generated_from"]
    assert set(origins) == set(suites)
    assert all(where.startswith("in-cluster: ") and SERVICE_URL in where for where in origins.values()), origins
    # load: locust's master and the default 1 worker; stress: its open-loop generator's pod.
    assert "the open-loop generator's pod" in origins["stress"]
    assert "locust's master and 1 worker pod " in origins["load"]
    assert f"running against {SERVICE_URL}" in result.stderr
    assert suites["load"]["metrics"]["requests"] > 0 and suites["stress"]["metrics"]["requests"] > 0
    # Every gate the environment declares was judged on data, and passed.
    assert document["gates"] and all(g["measured"] is not None and g["passed"] for g in document["gates"]), \
        [g for g in document["gates"] if not g["passed"]]


def test_the_load_reached_every_replica_through_the_service(verdict):
    """Every replica serving when verify began answered part of its requests (a pod the autoscaler
    adds late in stress may see none, so only those count)."""
    _, _, before, after = verdict
    served = {pod: after[pod] - before[pod] for pod in before if pod in after}
    assert len(served) >= 2 and all(count > 0 for count in served.values()), (before, after)


def test_the_runs_leave_no_pod_job_policy_or_service_behind(verdict):
    left = kubectl("-n", NAMESPACE, "get", "jobs,services,networkpolicies,configmaps", "-l", "shipyard.dev/suite-run",
                   "-o", "name").stdout.split()
    assert left == []
