"""Staged suites inside the cluster: `shipyard verify --target kubernetes` runs each suite as pods in
the environment's namespace, against the Service by its cluster DNS name, as production's clients
reach it: through kube-proxy, to every ready replica, under the namespace's NetworkPolicies.

One run of one suite is:
- a Job whose pod runs the suite with the runner image (shipyard.image_runner: the project's jobs
  image, the harness and the project's suites), `python -m shipyard.harness.pod run`: pytest
  suites as on a laptop; a locust suite as locust's master;
- the stress suite's runner pod is its open-loop generator, which asks for STRESS_CPU: on a node
  whose cores the scorer's pods fill, CPU is shared by request (cgroup weight), and a generator
  that gets too little falls behind its schedule, its lateness in every latency it reports;
- for a locust suite, a second Job of N worker pods (`suites.<suite>.workers` in environment.yaml,
  default 1) and a Service the workers find the master by: locust's own distributed mode, so a
  staging that outgrows one generator gets more workers, not another tool;
- a NetworkPolicy letting these pods reach the scorer's pods on their port, each other on locust's
  port, and DNS; nothing else;
- for the acceptance data, a ConfigMap with the environment's data sample.
The result comes back through the API (the runner's log, its last line) and is judged on the host
by the same gates. Everything the run created is removed when it ends, whatever the outcome.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from shipyard import cluster, podspec
from shipyard.harness.pod import RESULT_PREFIX, SPEC_VARIABLE
from shipyard.harness.suites import MASTER_PORT, SuiteResult, spec_for
from shipyard.project import Project
from shipyard.targets.base import TargetError
from shipyard.targets.pod_state import pod_problem

RUN_LABEL = "shipyard.dev/suite-run"
ROLE_LABEL = "shipyard.dev/suite-role"
DATA_MOUNT = "/shipyard-data"
MAX_DATA_BYTES = 900_000  # a ConfigMap holds at most 1 MiB
SUITE_DEADLINE_S = 3600  # bounds a pod that hangs; the suites' own limits are shorter


@dataclass(frozen=True)
class PodPlan:
    """What one suite run in the cluster is: everything the manifests are made from."""

    name: str
    namespace: str
    image: str
    suite: str
    url: str
    settings: dict[str, Any]
    context: dict[str, str]
    workers: int  # locust workers; 0 for a suite that is not a locust one
    scorer_selector: dict[str, str]
    scorer_port: int
    data: dict[str, str] = field(default_factory=dict)  # ConfigMap data mounted at DATA_MOUNT


SUITE_CPU = "50m"
# At SUITE_CPU, the generator weighed half a scorer pod (a seventh of the CPU beside three busy ones): make
# cluster-demo, three runs on this 2-core node, all failed the staging stress gates with the
# generator 1.5-2.3 s behind (lateness p99), answered and refusal p99 1.5-5 s. At 250m: lateness p99
# 15 ms, 3 x 10 200/s offered, answered p99 29-38 ms. 500m left no room for the pod the autoscaler
# adds under that stress (make test's HPA test, stop 41).
STRESS_CPU = "250m"


def run_name(suite: str) -> str:
    """A DNS-label name, unique enough for one namespace (it also names the master's Service)."""
    clean = re.sub(r"[^a-z0-9-]", "-", suite.lower()).strip("-")[:24] or "suite"
    return f"shipyard-{clean}-{time.strftime('%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"


def workers_for(project: Project, suite: str, settings: dict[str, Any]) -> int:
    """How many locust workers a suite gets: `workers` in its settings (config.py checks it; default
    1), none for a suite that is not a locust one."""
    return int(settings.get("workers", 1)) if spec_for(project, suite).runner == "locust" else 0


def manifests(plan: PodPlan) -> list[dict[str, Any]]:
    """The run's objects: pure, so what runs in the cluster is unit-tested without one."""
    def meta(name: str, **labels: str) -> dict[str, Any]:
        return {"name": name, "namespace": plan.namespace,
                "labels": {RUN_LABEL: plan.name, "app.kubernetes.io/component": "suite", **labels}}

    spec = {"suite": plan.suite, "url": plan.url, "settings": plan.settings, "context": plan.context,
            "workers": plan.workers, "master": f"{plan.name}-master"}
    same_run = {"podSelector": {"matchLabels": {RUN_LABEL: plan.name}}}
    locust_port = {"port": MASTER_PORT, "protocol": "TCP"}
    objects: list[dict[str, Any]] = [{
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(plan.name),
        "spec": {"podSelector": {"matchLabels": {RUN_LABEL: plan.name}}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [same_run], "ports": [locust_port]}] if plan.workers else [],
                 "egress": [{"to": [{"podSelector": {"matchLabels": plan.scorer_selector}}],
                             "ports": [{"port": plan.scorer_port, "protocol": "TCP"}]},
                            *([{"to": [same_run], "ports": [locust_port]}] if plan.workers else []),
                            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if plan.data:
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(plan.name), "data": plan.data})
        volumes.append({"name": "data", "configMap": {"name": plan.name}})
        mounts.append({"name": "data", "mountPath": DATA_MOUNT, "readOnly": True})

    def job(name: str, role: str, pods: int) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": role, "image": plan.image, "imagePullPolicy": "IfNotPresent", "args": ["run" if role == "runner" else "worker"],
            "env": [{"name": SPEC_VARIABLE, "value": json.dumps(spec)}],
            "resources": {"requests": {"cpu": STRESS_CPU if plan.suite == "stress" else SUITE_CPU, "memory": "128Mi"}, "limits": {"memory": "2Gi"}},
            "volumeMounts": mounts}
        if role == "runner" and plan.workers:
            container["ports"] = [{"name": "locust", "containerPort": MASTER_PORT}]
        labels = {ROLE_LABEL: role}
        built = meta(name, **labels)
        return podspec.job(name, built["namespace"], built["labels"], [container], volumes,
                           deadline_s=SUITE_DEADLINE_S, ttl_s=600, pods=pods,
                           pod_labels={RUN_LABEL: plan.name, "app.kubernetes.io/component": "suite", **labels},
                           terminationGracePeriodSeconds=10)

    objects.append(job(plan.name, "runner", 1))
    if plan.workers:
        objects.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{plan.name}-master"),
                        "spec": {"selector": {RUN_LABEL: plan.name, ROLE_LABEL: "runner"},
                                 "ports": [{"name": "locust", **locust_port}]}})
        objects.append(job(f"{plan.name}-workers", "worker", plan.workers))
    return objects


def result_from_log(suite: str, log: str) -> SuiteResult | None:
    """The runner's result: the JSON after RESULT_PREFIX on its last such line."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX):])
            return SuiteResult(data["name"], data["status"], data["seconds"], data["metrics"], data.get("details", {}))
    return None


class PodRunner:
    """Runs suites as pods in the environment's namespace (see the module's docstring)."""

    def __init__(self, namespace: str, image: str, url: str, scorer_selector: dict[str, str], scorer_port: int,
                 subject: dict[str, str]) -> None:
        self.namespace, self.image, self.url = namespace, image, url
        self.scorer_selector, self.scorer_port = scorer_selector, scorer_port
        self.subject = subject

    def where(self, workers: int, suite: str = "") -> str:
        """Where a suite's requests came from, as the verdict and the report say it."""
        generators = (f"locust's master and {workers} worker pod{'s' if workers != 1 else ''}" if workers
                      else "the open-loop generator's pod" if suite == "stress" else "a runner pod")
        return f"in-cluster: {generators} in {self.namespace}, through the Service ({self.url})"

    def plan(self, project: Project, suite: str, settings: dict[str, Any], context: dict[str, str]) -> PodPlan:
        from shipyard.image_runner import WORKSPACE

        context = dict(context)
        data: dict[str, str] = {}
        if "SHIPYARD_SAMPLES" in context:  # the samples file is in the runner image, where the project is
            context["SHIPYARD_SAMPLES"] = f"{WORKSPACE}/{Path(context['SHIPYARD_SAMPLES']).relative_to(project.root)}"
        sample = Path(context.pop("SHIPYARD_DATA_SAMPLE", ""))
        if sample.name and sample.is_file():
            if sample.stat().st_size > MAX_DATA_BYTES:
                raise TargetError(f"data_sample {sample} is {sample.stat().st_size} bytes: a suite pod receives it in a "
                                  f"ConfigMap, at most {MAX_DATA_BYTES}; use a smaller representative sample")
            data[sample.name] = sample.read_text()
            context["SHIPYARD_DATA_SAMPLE"] = f"{DATA_MOUNT}/{sample.name}"
        return PodPlan(run_name(suite), self.namespace, self.image, suite, self.url, settings, context,
                       workers_for(project, suite, settings), self.scorer_selector, self.scorer_port, data)

    def run(self, project: Project, suite: str, settings: dict[str, Any], context: dict[str, str],
            progress: Callable[[str], None]) -> SuiteResult:
        plan = self.plan(project, suite, settings, context)
        started = time.monotonic()
        try:
            cluster.apply(manifests(plan))
            progress(f"{suite}: job/{plan.name} in {plan.namespace}"
                     + (f" with {plan.workers} locust worker pod(s)" if plan.workers else ""))
            log, failed = self._wait(plan, progress)
        finally:
            try:
                for kind in ("Job", "Service", "NetworkPolicy", "ConfigMap"):
                    cluster.delete(kind, plan.namespace, labels=f"{RUN_LABEL}={plan.name}")
            except cluster.ClusterError:  # left behind, the Job ends by its deadline; the suite's result stands
                pass
        result = result_from_log(suite, log)
        if result is None:
            return SuiteResult(suite, "error", round(time.monotonic() - started, 1), {},
                               {"output": f"job/{plan.name} {'failed' if failed else 'ended'} without a result:\n"
                                          + log[-2000:]})
        result.details["generator"] = self.where(plan.workers, suite)
        # The time verify spent on it, pods' start included; the suite's own time stays in details.
        result.details["seconds_in_pod"], result.seconds = result.seconds, round(time.monotonic() - started, 1)
        return result

    def _wait(self, plan: PodPlan, progress: Callable[[str], None]) -> tuple[str, bool]:
        """The runner's log once its Job has ended (and whether it failed); a pod that cannot start
        (an image that cannot be pulled, a crash) ends the wait with the kubelet's reason. The
        pods are watched, not polled: every change is seen as it happens."""

        started = time.monotonic()
        running = False

        def ended(pods: list[dict[str, Any]]) -> bool | None:
            nonlocal running
            for pod in pods:
                problem = pod_problem(pod)
                if problem:
                    raise TargetError(f"{plan.suite}: pod {pod['metadata']['name']} cannot run: {problem}")
            if not running and any(p.get("status", {}).get("phase") == "Running" for p in pods
                                   if p["metadata"].get("labels", {}).get(ROLE_LABEL) == "runner"):
                running = True
                progress(f"{plan.suite}: running in the cluster")
            return True if pods and all(p.get("status", {}).get("phase") in ("Succeeded", "Failed") for p in pods) else None

        limit = SUITE_DEADLINE_S + 120
        cluster.watch_until(f"the pods of job {plan.name} in namespace {plan.namespace}",
                            cluster.core().list_namespaced_pod, plan.namespace, ended, limit,
                            label_selector=f"{RUN_LABEL}={plan.name}")
        # The Job's own verdict on its pods (its controller records it moments after they end).
        outcome = cluster.job_outcome(plan.namespace, plan.name, max(30.0, limit - (time.monotonic() - started)))
        if outcome is None:
            raise TargetError(f"{plan.suite}: job/{plan.name} did not end within {SUITE_DEADLINE_S} s")
        return cluster.job_logs(plan.namespace, plan.name, tail=200), outcome == "Failed"


@contextmanager
def pod_runner(target: Any) -> Iterator[PodRunner]:
    """The environment's PodRunner (a KubernetesTarget's), once it is ready and its runner image known."""
    from shipyard import manifests

    st = target.status()
    if st.state != "ready":
        raise TargetError(f"{target.env.name} is {st.state} on Kubernetes"
                          + (f" ({'; '.join(st.problems)})" if st.problems else "")
                          + f": fix it and run `shipyard deploy {target.env.name} --target kubernetes`")
    workload = cluster.get("Deployment", target.workload, target.namespace) or {}
    image = workload.get("metadata", {}).get("annotations", {}).get(manifests.ANNOTATION_RUNNER_IMAGE)
    if not image:
        raise TargetError(f"no runner image is known for {st.image} in {target.namespace}: suites run in the cluster "
                          "from the runner image built with it; build here (`shipyard image build`) and deploy that "
                          f"image (`shipyard deploy {target.env.name} --target kubernetes`)")
    container = workload["spec"]["template"]["spec"]["containers"][0]
    port = next((p["containerPort"] for p in container.get("ports", [])), None)
    if port is None:
        raise TargetError(f"deployment/{target.workload} declares no containerPort: the suites' NetworkPolicy needs it")
    yield PodRunner(target.namespace, image, target.service_url, workload["spec"]["selector"]["matchLabels"], int(port),
                    {"image": st.image, "digest": st.image.rsplit("@", 1)[-1], "bento": st.bento,
                     "model_version": st.model})
