"""What `shipyard verify --target kubernetes` creates for one suite, checked without a cluster:
restricted pods, locust's distributed mode, a NetworkPolicy that lets the pods reach only the
scorer, each other and DNS, and the result read back from the runner's log."""

from __future__ import annotations

import json

import pytest

from shipyard.harness.pod import RESULT_PREFIX, SPEC_VARIABLE
from shipyard.harness.suites import MASTER_PORT
from shipyard.project import current_project
from shipyard.targets.base import TargetError
from shipyard.targets.suite_pods import DATA_MOUNT, MAX_DATA_BYTES, PodRunner, manifests, result_from_log

SCORER = {"app.kubernetes.io/name": "fraud-scorer", "app.kubernetes.io/component": "api"}
URL = "http://fraud-scorer.fraud-staging.svc.cluster.local:80"


def runner() -> PodRunner:
    return PodRunner("fraud-staging", "127.0.0.1:5000/fraud-scorer-runner@sha256:" + "a" * 64, URL, SCORER, 3000, {})


def objects(suite: str, settings: dict, context: dict | None = None) -> list[dict]:
    return manifests(runner().plan(current_project(), suite, settings, context or {}))


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def test_a_locust_suite_is_a_master_job_a_worker_job_and_the_service_workers_find_the_master_by():
    objs = objects("load", {"workers": 3})
    [master, workers] = by_kind(objs, "Job")
    [service] = by_kind(objs, "Service")
    assert workers["spec"]["completions"] == workers["spec"]["parallelism"] == 3
    assert master["spec"]["completions"] == 1
    assert [c["args"] for j in (master, workers) for c in j["spec"]["template"]["spec"]["containers"]] == [["run"], ["worker"]]
    spec = json.loads(master["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])
    assert spec["url"] == URL and spec["workers"] == 3 and spec["master"] == service["metadata"]["name"]
    assert service["spec"]["ports"][0]["port"] == MASTER_PORT
    assert set(service["spec"]["selector"].items()) <= set(master["spec"]["template"]["metadata"]["labels"].items())
    assert not set(service["spec"]["selector"].items()) <= set(workers["spec"]["template"]["metadata"]["labels"].items())


def test_the_stress_suite_is_one_generator_pod_with_a_cpu_share_that_leaves_room_for_the_autoscaler():
    """The generator asks for enough CPU to keep its schedule beside busy scorer pods (CPU is shared
    by request), and no more than an eighth of a 2-core node: the autoscaler's pods need the rest."""
    from shipyard.targets.suite_pods import STRESS_CPU, SUITE_CPU

    objs = objects("stress", {})
    [job] = by_kind(objs, "Job")
    assert not by_kind(objs, "Service")  # no locust workers to find a master
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == STRESS_CPU
    assert int(SUITE_CPU.removesuffix("m")) < int(STRESS_CPU.removesuffix("m")) <= 250
    [smoke] = by_kind(objects("smoke", {}), "Job")
    assert smoke["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == SUITE_CPU


def test_a_pytest_suite_is_one_runner_pod_with_no_listening_port():
    objs = objects("integration", {})
    assert [o["kind"] for o in objs] == ["NetworkPolicy", "Job"]
    [policy] = by_kind(objs, "NetworkPolicy")
    assert policy["spec"]["ingress"] == []


@pytest.mark.parametrize("suite", ["smoke", "load"])
def test_every_pod_meets_the_restricted_pod_security_standard(suite):
    for job in by_kind(objects(suite, {}), "Job"):
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            assert "@sha256:" in container["image"]
        assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["backoffLimit"] == 0


def test_the_pods_may_reach_the_scorer_on_its_port_each_other_and_dns_only():
    [policy] = by_kind(objects("load", {"workers": 2}), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = policy["spec"]["egress"]
    assert egress[0] == {"to": [{"podSelector": {"matchLabels": SCORER}}], "ports": [{"port": 3000, "protocol": "TCP"}]}
    assert egress[1]["ports"] == [{"port": MASTER_PORT, "protocol": "TCP"}]
    assert egress[2] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": MASTER_PORT, "protocol": "TCP"}]


def test_the_samples_are_read_in_the_image_and_the_data_sample_comes_in_a_configmap(tmp_path):
    project = current_project()
    sample = tmp_path / "sample.csv"
    sample.write_text("amount,is_fraud\n1.0,0\n")
    plan = runner().plan(project, "acceptance", {}, {"SHIPYARD_SAMPLES": str(project.path("tests/staged/samples.json")),
                                                     "SHIPYARD_DATA_SAMPLE": str(sample)})
    assert plan.context["SHIPYARD_SAMPLES"] == "/workspace/tests/staged/samples.json"
    assert plan.context["SHIPYARD_DATA_SAMPLE"] == f"{DATA_MOUNT}/sample.csv"
    [configmap] = by_kind(manifests(plan), "ConfigMap")
    assert configmap["data"] == {"sample.csv": "amount,is_fraud\n1.0,0\n"}
    sample.write_text("x" * (MAX_DATA_BYTES + 1))
    with pytest.raises(TargetError, match="data_sample .* bytes"):
        runner().plan(project, "acceptance", {}, {"SHIPYARD_DATA_SAMPLE": str(sample)})


def test_the_result_is_the_runners_last_result_line_and_a_log_without_one_has_none():
    line = RESULT_PREFIX + json.dumps({"name": "load", "status": "passed", "seconds": 3.5, "metrics": {"rps": 150.0},
                                       "details": {"history": []}})
    result = result_from_log("load", "locust says things\n" + line + "\n")
    assert result is not None and result.status == "passed" and result.metrics == {"rps": 150.0}
    assert result_from_log("load", "Traceback ...\nImportError: no module named locust") is None
    assert SPEC_VARIABLE == "SHIPYARD_SUITE_POD"
