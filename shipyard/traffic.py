"""`shipyard traffic ENV`: steady, bounded traffic to an environment's service, from where its
clients are: a pod in the environment's namespace calling the Service by its cluster DNS name
(Kubernetes), or the host (local). A canary is judged on production's metrics, so production
needs traffic while it runs: real clients in production, this in a demo or a test.

The bodies are the project's (shipyard.yaml `traffic`: the samples file and route weights, else
the served OpenAPI document's examples), as the staged suites send them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from shipyard import cluster, podspec
from shipyard.config import Environment
from shipyard.project import current_project
from shipyard.targets.base import TargetError

SENDER = Path(__file__).with_name("traffic_sender.py")
LABEL = "shipyard.dev/traffic"
MAX_RPS = 500
MAX_DURATION_S = 3600


@dataclass(frozen=True)
class TrafficPlan:
    url: str
    rps: float
    duration_s: float
    routes: dict[str, dict[str, Any]]  # route -> {"weight": int, "bodies": [...]}

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "rps": self.rps, "duration_s": self.duration_s, "routes": self.routes})


def _routes(document: Callable[[], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Route -> integer weight and bodies, from the project's samples and weights."""
    from shipyard.harness.staged.traffic import TrafficError, examples_for, load_samples

    project = current_project()
    doc = document()
    samples = load_samples(str(project.path(project.traffic.samples))) if project.traffic.samples else {}
    wanted = project.traffic.weights or {route: 1.0 for route in samples}
    if not wanted or any(route not in samples for route in wanted):
        samples = examples_for(doc, samples)
        wanted = project.traffic.weights or {route: 1.0 for route in samples}
    unknown = sorted(r for r in wanted if not samples.get(r))
    if unknown:
        raise TrafficError(f"traffic.weights names {', '.join(unknown)}, which has no samples and no OpenAPI example")
    smallest = min(wanted.values())
    base = project.path(project.traffic.samples).parent if project.traffic.samples else project.root
    return {route: {"weight": max(1, round(w / smallest)),
                    "bodies": [_wire(doc, route, body, base) for body in samples[route]]}
            for route, w in wanted.items()}


def _wire(document: dict[str, Any], route: str, body: Any, base: Path) -> dict[str, str]:
    """A body as the sender sends it: its Content-Type and bytes (base64), by the route's media
    type; a file a sample names (`"@path"`) is read relative to `base`."""
    import base64

    from shipyard.harness.staged.traffic import encode

    wire = encode(document, route, body, base)
    return {"content_type": wire.content_type, "base64": base64.b64encode(wire.content).decode()}


def _check(rps: float, duration_s: float) -> None:
    if not 0 < rps <= MAX_RPS:
        raise TargetError(f"--rps must be above 0 and at most {MAX_RPS} (got {rps:g})")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise TargetError(f"--duration must be above 0 and at most {MAX_DURATION_S} s (got {duration_s:g})")


def _summary(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise TargetError(f"the traffic sender ended without a summary; it said: {text.strip()[-500:]}")


def run_local(env: Environment, rps: float, duration_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """From the host to the environment's local server."""
    import tempfile

    import httpx

    from shipyard.targets import LocalTarget

    _check(rps, duration_s)
    with LocalTarget(env).endpoint() as endpoint, tempfile.TemporaryDirectory() as scratch:
        plan = TrafficPlan(endpoint.url, rps, duration_s,
                           _routes(lambda: httpx.get(endpoint.url + "/docs.json", timeout=10).json()))
        plan_file = Path(scratch) / "plan.json"
        plan_file.write_text(plan.to_json())
        proc = subprocess.Popen([sys.executable, str(SENDER), str(plan_file)], stdout=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if not line.startswith("{"):
                progress(line.rstrip())
        proc.wait(timeout=30)
    return _summary("".join(lines))


class KubernetesTraffic:
    """A Job in the environment's namespace sending the plan to the Service by its DNS name."""

    def __init__(self, env: Environment, rps: float, duration_s: float) -> None:
        from shipyard.targets import KubernetesTarget

        _check(rps, duration_s)
        self.target = KubernetesTarget(env)
        self.namespace = env.namespace
        self.rps, self.duration_s = rps, duration_s
        self.name = f"shipyard-traffic-{time.strftime('%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"

    def start(self, progress: Callable[[str], None]) -> None:
        project = self.target.project
        workload = cluster.get("Deployment", project.kubernetes.workload, self.namespace)
        if workload is None or not self.target.subject():
            raise TargetError(f"nothing serves in {self.namespace}: deploy {self.target.env.name} first")
        pod_spec = workload["spec"]["template"]["spec"]
        image = pod_spec["containers"][0]["image"]
        port = next((p["containerPort"] for p in pod_spec["containers"][0].get("ports", [])), None)
        service = project.kubernetes.service
        url = self.target.service_url
        plan = TrafficPlan(url, self.rps, self.duration_s, _routes(lambda: json.loads(cluster.proxy_get(
            self.namespace, "Service", service, project.kubernetes.port, "docs.json"))))
        labels = {LABEL: self.name, "app.kubernetes.io/component": "traffic"}
        objects = [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": self.name, "namespace": self.namespace,
                                                                   "labels": labels},
             "data": {"plan.json": plan.to_json(), "sender.py": SENDER.read_text()}},
            # The namespace denies egress by default: this pod may reach the scorer's pods and DNS, nothing else.
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
             "spec": {"podSelector": {"matchLabels": {LABEL: self.name}}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"podSelector": {"matchLabels": workload["spec"]["selector"]["matchLabels"]}}],
                                  "ports": [{"port": port, "protocol": "TCP"}]},
                                 {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}},
            podspec.job(self.name, self.namespace, labels, [{
                "name": "traffic", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "/traffic/sender.py", "/traffic/plan.json"],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "traffic", "mountPath": "/traffic"}]}],
                [{"name": "traffic", "configMap": {"name": self.name}}],
                deadline_s=int(self.duration_s) + 120, ttl_s=3600),
        ]
        cluster.apply(objects)
        progress(f"traffic: job/{self.name} in {self.namespace} sends {self.rps:g} requests/s to {url} for "
                 f"{self.duration_s:g} s")

    def wait(self, progress: Callable[[str], None]) -> dict[str, Any]:
        """The sender's summary once the Job ends (bounded by its own deadline)."""
        if cluster.job_outcome(self.namespace, self.name, self.duration_s + 180) is None:
            raise TargetError(f"job/{self.name} in {self.namespace} did not finish in time: "
                              f"kubectl -n {self.namespace} logs job/{self.name}")
        return _summary(cluster.job_logs(self.namespace, self.name))

    def wait_sending(self, progress: Callable[[str], None], timeout_s: float = 180) -> None:
        """Until the sender's container runs (its image pulled, its pod scheduled): traffic a
        promotion starts must be flowing before the canary's first step is judged."""
        def sending(pods: list[dict[str, Any]]) -> str | None:
            if any(c.get("state", {}).get("running") for p in pods for c in p.get("status", {}).get("containerStatuses") or []):
                return "running"
            if any(p.get("status", {}).get("phase") in ("Failed", "Succeeded") for p in pods):
                return "ended"
            return None

        state = cluster.watch_until(f"the pods of job {self.name} in namespace {self.namespace}",
                                    cluster.core().list_namespaced_pod, self.namespace, sending, timeout_s,
                                    label_selector=f"{LABEL}={self.name}")
        if state == "ended":
            said = cluster.job_logs(self.namespace, self.name)
            raise TargetError(f"job/{self.name} in {self.namespace} ended before sending: {said.strip()[-500:]}")
        if state is None:
            raise TargetError(f"job/{self.name} in {self.namespace} was not sending within {timeout_s:g} s: "
                              f"kubectl -n {self.namespace} describe job/{self.name}")

    def stop(self, progress: Callable[[str], None], timeout_s: float = 60) -> dict[str, Any]:
        """End the traffic now and return the sender's summary: the Job is suspended, so its pod
        is terminated (SIGTERM: the sender lets requests in flight finish and prints its summary,
        read from the pod's log stream as it ends) and not replaced."""
        job = cluster.get("Job", self.name, self.namespace) or {}
        pod = cluster.job_pod(self.namespace, self.name)
        if pod is None or any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                              for c in job.get("status", {}).get("conditions", [])):
            return self.wait(progress)
        from urllib3.exceptions import HTTPError

        # The log is followed before the pod is told to end, so the summary it prints on the way out is in it.
        follow = cluster.follow_logs(self.namespace, pod["metadata"]["name"], timeout_s)
        chunks: list[bytes] = []
        try:
            cluster.patch("Job", self.name, self.namespace, {"spec": {"suspend": True}})
            try:
                for chunk in follow.stream(4096):
                    chunks.append(chunk)
            except HTTPError:  # the stream cut short or silent for timeout_s: the summary is in what arrived, or not
                pass
        finally:
            follow.release_conn()
        summary = _summary(b"".join(chunks).decode(errors="replace"))
        progress(f"traffic stopped: {summary['sent']} sent, answers by status {summary['statuses']}, "
                 f"{summary['failed']} failed")
        return summary

    def remove(self) -> None:
        try:
            for kind in ("Job", "ConfigMap", "NetworkPolicy"):
                cluster.delete(kind, self.namespace, labels=f"{LABEL}={self.name}")
        except cluster.ClusterError:  # left behind, the Job ends by its own deadline and is gone after its TTL
            pass
