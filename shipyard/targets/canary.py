"""A canary on Kubernetes: a second Deployment of the new digest behind the same Service.

Its pods carry every label of the stable pods (so the Service, the NetworkPolicies and the
PodDisruptionBudget treat them alike) plus `shipyard.dev/track: canary`, which its own selector
adds, so the two Deployments never adopt each other's ReplicaSets. kube-proxy spreads a Service's
connections evenly over its ready endpoints, so the canary's share of traffic is its share of
pods: Argo Rollouts' basic canary, without a mesh or a proxy in production's path. Stable keeps
its replica count throughout (its capacity never shrinks while the canary is judged).

Metrics come from each pod's own /metrics through the API server's pod proxy: the same
credentials and path as every other shipyard call, nothing exposed, and each step is read at its
exact start and end (docs/canary.md says why not a Prometheus server).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

from shipyard import cluster
from shipyard.targets.base import TargetError

if TYPE_CHECKING:
    from shipyard.targets.kubernetes import KubernetesTarget

TRACK_LABEL = "shipyard.dev/track"
ANNOTATION_ABORT = "shipyard.dev/abort"
ANNOTATION_SUBJECT = "shipyard.dev/canary-of"


class KubernetesCanary:
    """The canary Deployment of one environment: create, scale, scrape, abort, remove."""

    def __init__(self, target: "KubernetesTarget") -> None:
        self.target = target
        self.namespace = target.namespace
        self.name = f"{target.workload}-canary"
        self._rendered: dict[str, dict | None] = {}

    # --- state -------------------------------------------------------------------------------

    def current(self) -> dict | None:
        return cluster.get("Deployment", self.name, self.namespace)

    def subject(self) -> str:
        """The digest a canary in progress serves, or ""."""
        dep = self.current()
        return "" if dep is None else dep["metadata"].get("annotations", {}).get(ANNOTATION_SUBJECT, "")

    def stable_replicas(self) -> int:
        dep = cluster.get("Deployment", self.target.workload, self.namespace)
        if dep is None:
            raise TargetError(f"deployment/{self.target.workload} is absent in {self.namespace}: nothing to canary against")
        return int(dep["spec"].get("replicas", 1))

    # --- moving it ---------------------------------------------------------------------------

    def set(self, subject: str, replicas: int, progress: Callable[[str], None], timeout_s: float = 300) -> None:
        """The canary of `subject` at `replicas` pods, all ready; rendered and checked exactly
        like a deploy of it (schema, scan, parity), from the environment's own manifests."""
        from shipyard.image import resolve_deployable
        from shipyard.manifests import ImageRef

        if self._rendered.get(subject) is None:  # checked once per promotion, not once per step
            reference, notes = resolve_deployable(subject)
            image = ImageRef.parse(reference)
            objects, _ = self.target.preflight(image, self.target._with_jobs_image(image, notes, progress),
                                               lambda _: None)
            self._rendered[subject] = next((o for o in objects if o["kind"] == "Deployment"
                                            and o["metadata"]["name"] == self.target.workload), None)
        workload = self._rendered[subject]
        if workload is None:
            raise TargetError(f"{self.target.env.name}'s manifests have no Deployment {self.target.workload}")
        cluster.apply([self._canary_of(workload, subject, replicas)])
        self.target.wait_ready([self.name], progress, timeout_s)

    def _canary_of(self, workload: dict, subject: str, replicas: int) -> dict:
        dep = copy.deepcopy(workload)
        meta = dep["metadata"]
        meta["name"] = self.name
        meta.setdefault("labels", {})[TRACK_LABEL] = "canary"
        meta.setdefault("annotations", {})[ANNOTATION_SUBJECT] = subject
        spec = dep["spec"]
        spec["replicas"] = replicas
        spec["selector"].setdefault("matchLabels", {})[TRACK_LABEL] = "canary"
        spec["template"]["metadata"].setdefault("labels", {})[TRACK_LABEL] = "canary"
        return dep

    def remove(self, progress: Callable[[str], None], timeout_s: float = 120) -> None:
        """Delete the canary and wait for its pods to finish draining (preStop, in-flight
        requests): until then they still hold connections the Service gave them."""
        if self.current() is None:
            return
        progress(f"removing deployment/{self.name}")
        cluster.delete("Deployment", self.namespace, self.name)
        if cluster.watch_until(f"the canary's pods in namespace {self.namespace}", cluster.core().list_namespaced_pod,
                               self.namespace, lambda pods: True if not pods else None, timeout_s,
                               label_selector=f"{TRACK_LABEL}=canary") is None:
            raise TargetError(f"the canary's pods in {self.namespace} did not terminate within {timeout_s:g}s")

    def wait_removed(self, timeout_s: float) -> bool:
        """True once the canary's Deployment is gone (watched), False after timeout_s."""
        return cluster.wait_gone("Deployment", self.namespace, [self.name], timeout_s)

    def request_abort(self, who: str) -> bool:
        """Ask the promotion running the canary to abort it (it polls this annotation)."""
        try:
            cluster.patch("Deployment", self.name, self.namespace, {"metadata": {"annotations": {ANNOTATION_ABORT: who}}})
        except cluster.ClusterError:  # no canary (any more): nothing to abort
            return False
        return True

    def abort_requested(self) -> str:
        dep = self.current()
        return "" if dep is None else dep["metadata"].get("annotations", {}).get(ANNOTATION_ABORT, "")

    # --- reading production's metrics -----------------------------------------------------------

    def _pods(self, include_terminating: bool = False) -> list[dict]:
        pods = cluster.list_objects("Pod", self.namespace, labels=f"{TRACK_LABEL}=canary")
        return [p for p in pods if include_terminating or "deletionTimestamp" not in p["metadata"]]

    def scrape(self) -> dict[str, dict[str, str]]:
        """{track: {pod: /metrics text}} for every ready pod serving the Service, canary or stable."""
        stable = cluster.get("Deployment", self.target.workload, self.namespace) or {}
        labels = stable.get("spec", {}).get("selector", {}).get("matchLabels", {})
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = cluster.list_objects("Pod", self.namespace, labels=selector)
        pages: dict[str, dict[str, str]] = {"canary": {}, "stable": {}}
        for pod in pods:
            statuses = pod.get("status", {}).get("containerStatuses", [])
            if "deletionTimestamp" in pod["metadata"] or not statuses or not all(c.get("ready") for c in statuses):
                continue
            name = pod["metadata"]["name"]
            port = next((p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])), None)
            if port is None:
                continue
            try:
                page = cluster.proxy_get(self.namespace, "Pod", name, port, "metrics")
            except cluster.ClusterError as exc:
                raise TargetError(f"cannot read /metrics of pod {name} in {self.namespace} through the API server: "
                                  f"{str(exc)[-300:]}") from None
            track = "canary" if pod["metadata"].get("labels", {}).get(TRACK_LABEL) == "canary" else "stable"
            pages[track][name] = page
        return pages
