"""The Kubernetes target: an environment in its namespace on the cluster of the current kubeconfig
context. Deploys render, validate, scan and parity-check the manifests first, then apply them
server-side and watch every Deployment of the release until it is ready or says why not.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from shipyard import cluster
from shipyard.config import Environment
from shipyard.project import current_project
from shipyard.targets.base import Status, TargetError
from shipyard.targets.lease import LeaseLock
from shipyard.targets.pod_state import STUCK_GRACE_S, pod_problem
from shipyard.targets.records import ConfigMapRecords

if TYPE_CHECKING:
    from shipyard.manifests import ImageRef
    from shipyard.targets.canary import KubernetesCanary
    from shipyard.targets.scale import ScaleWatch
    from shipyard.targets.suite_pods import PodRunner

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=shipyard"
ANNOTATION_BENTO = "shipyard.dev/bento"
ANNOTATION_MODEL = "shipyard.dev/model"
# A watched rollout is looked at again this often even when its Deployment does not change (its pods may).
RESYNC_S = 5


@dataclass(frozen=True)
class WorkloadHealth:
    name: str
    ready: bool
    stuck: bool  # waiting will not help (crash loop, image pull failure)
    summary: str


@dataclass(frozen=True)
class KubernetesDeploy:
    environment: str
    namespace: str
    image: str
    changed: bool
    ready: int
    desired: int
    seconds: float
    checks: list[str]


class KubernetesTarget:
    """Runs an environment in its namespace on the cluster of the current kubeconfig context."""

    def __init__(self, env: Environment) -> None:
        if not env.namespace:
            raise TargetError(f"environment {env.name!r} has no namespace in its environment.yaml")
        self.env = env
        self.namespace = env.namespace
        self.project = current_project()
        self.workload = self.project.kubernetes.workload  # the Deployment serving the Bento
        self.records = ConfigMapRecords(env.namespace)
        self.lock = LeaseLock(env.namespace, self.make_namespace)

    def preflight(self, image: "ImageRef", annotations: dict[str, str], progress: Callable[[str], None]) -> tuple[list[dict], list[str]]:
        """Render, validate, scan and parity-check: everything that happens before the cluster."""
        from shipyard import manifests
        from shipyard.config import load_environment

        checks = []
        objects = manifests.render(self.env.name, image, annotations)
        manifests.validate(objects)
        checks.append(f"schema: {len(objects)} objects valid for Kubernetes {manifests.KUBERNETES_VERSION}")
        progress(checks[-1])
        scan = manifests.scan(objects)
        if scan.failed:
            raise manifests.ManifestError("the scanner failed these checks (fix them, or write each down with its "
                                          f"reason in {self.project.kubernetes.scan_exceptions or 'a file named by shipyard.yaml kubernetes.scan_exceptions'}):\n  " + "\n  ".join(scan.failed))
        checks.append(f"scan: checkov {manifests.CHECKOV_VERSION}, {scan.passed} checks passed, 0 failed, "
                      f"{len(scan.skipped)} written exceptions")
        progress(checks[-1])
        if self.env.parity:
            other = load_environment(self.env.parity.with_)
            diffs = manifests.parity(self.env, other, self.env.parity.allow)
            bad = [d for d in diffs if not d.allowed]
            if bad:
                raise manifests.ManifestError(
                    f"{self.env.name} is no longer a clone of {other.name}; differences outside parity.allow:\n  "
                    + "\n  ".join(f"{d.obj} {d.path}: {d.left!r} vs {d.right!r}" for d in bad)
                    + f"\n(see: shipyard diff {self.env.name} {other.name})")
            checks.append(f"parity with {other.name}: {len(diffs)} differences, all allowed")
            progress(checks[-1])
        return objects, checks

    def deploy(self, image: "ImageRef", annotations: dict[str, str], progress: Callable[[str], None] = lambda _: None,
               dry_run: bool = False, timeout_s: float = 300) -> KubernetesDeploy:
        from shipyard import kubectl, manifests

        started = time.monotonic()
        missing = [c.name for c in self.project.companions if manifests.companion_annotation(c.name) not in annotations]
        if missing:
            raise TargetError(f"no image is known for the companion {', '.join(missing)} of {image}: run "
                              "`shipyard image build` once (it builds and records the images shipyard.yaml's "
                              "companions name)")
        annotations = self._with_jobs_image(image, annotations, progress)
        objects, checks = self.preflight(image, annotations, progress)
        cluster.check_reachable()
        if dry_run and cluster.get("Namespace", self.namespace) is None:
            # Nothing to diff against: a server-side dry run needs the namespace to exist.
            progress(f"namespace {self.namespace} does not exist yet; deploying would create:")
            for obj in objects:
                progress(f"  {obj['kind']}/{obj['metadata']['name']}")
            return KubernetesDeploy(self.env.name, self.namespace, str(image), True, 0, 0,
                                    time.monotonic() - started, checks)
        live = {d["metadata"]["name"]: d["spec"].get("replicas", 1)
                for d in cluster.list_objects("Deployment", self.namespace)}
        declared = manifests.keep_autoscaled_replicas(objects, live)
        rendered = manifests.to_yaml(declared)
        if dry_run:
            diff = kubectl.diff_server_side(rendered)
            if diff.returncode > 1:
                raise TargetError(f"server-side dry run failed: {diff.stderr.strip()}")
            progress(diff.stdout.strip() or "no changes")
            return KubernetesDeploy(self.env.name, self.namespace, str(image), bool(diff.stdout.strip()), 0, 0,
                                    time.monotonic() - started, checks)
        before = cluster.get("Deployment", self.workload, self.namespace)
        progress(f"applying {len(objects)} objects to namespace {self.namespace} (server-side)")
        cluster.apply(declared)
        after = cluster.get("Deployment", self.workload, self.namespace) or {"metadata": {"generation": 0}}
        changed = before is None or before["metadata"]["generation"] != after["metadata"]["generation"]
        ready, desired = self._wait_for_rollout(str(image), progress, timeout_s)
        self._wait_for_companions(objects, progress, max(30.0, timeout_s - (time.monotonic() - started)))
        return KubernetesDeploy(self.env.name, self.namespace, str(image), changed, ready, desired,
                                time.monotonic() - started, checks)

    def _wait_for_rollout(self, image: str, progress: Callable[[str], None], timeout_s: float) -> tuple[int, int]:
        """Until every replica runs the new template and is available: the Deployment watched,
        its pods looked at on each change and at each resync (a pod stuck pulling its image
        changes no Deployment), and a stuck pod fails the rollout after a short grace."""
        last = [""]
        stuck_since: list[float | None] = [None]

        def rolled_out(deps: list[dict]) -> tuple[int, int] | None:
            dep = next(iter(deps), {"metadata": {"generation": 1}})
            spec, st = dep.get("spec", {}), dep.get("status", {})
            want = spec.get("replicas", 1)
            updated, available = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
            line = f"rollout: {updated}/{want} updated, {available}/{want} available"
            if line != last[0]:
                progress(line)
                last[0] = line
            if st.get("observedGeneration", 0) >= dep["metadata"]["generation"] and updated == want \
                    and st.get("replicas", 0) == want and available == want:
                return available, want
            problem = self._new_pod_problem(image, dep)
            if problem:
                stuck_since[0] = stuck_since[0] or time.monotonic()
                if time.monotonic() - stuck_since[0] > STUCK_GRACE_S:
                    raise TargetError(self._failure(image, problem))
            else:
                stuck_since[0] = None
            return None

        done = cluster.watch_until(f"deployment {self.workload} in namespace {self.namespace}",
                                   cluster.apps().list_namespaced_deployment, self.namespace, rolled_out, timeout_s,
                                   resync_s=RESYNC_S, field_selector=f"metadata.name={self.workload}")
        if done is None:
            raise TargetError(self._failure(image, f"not ready within {timeout_s:g}s"))
        return done

    def _wait_for_companions(self, objects: list[dict], progress: Callable[[str], None], timeout_s: float) -> None:
        """The other Deployments of the release (the stream broker and workers) must be ready too.

        A workload whose pods are stuck (crash loop, image pull) fails the deploy after a short
        grace period, naming the workload and the pod's own last words, instead of running into
        the timeout: that is what the release manager needs to read first."""
        names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != self.workload]
        self.wait_ready(names, progress, timeout_s)

    def wait_ready(self, names: list[str], progress: Callable[[str], None], timeout_s: float) -> None:
        """Every named Deployment ready, or a TargetError naming the one that is not and why
        (a stuck one after a short grace, rather than at the timeout). Watched like a rollout."""
        deadline = time.monotonic() + timeout_s
        for name in names:
            stuck_since: list[float | None] = [None]
            seen: list[WorkloadHealth | None] = [None]

            def ready(deps: list[dict]) -> bool | None:
                health = seen[0] = self._workload_health(name, next(iter(deps), None))
                if health.ready:
                    return True
                if health.stuck:
                    stuck_since[0] = stuck_since[0] or time.monotonic()
                    if time.monotonic() - stuck_since[0] > STUCK_GRACE_S:
                        raise TargetError(f"deployment/{name} in {self.namespace} did not become ready: {health.summary}")
                else:
                    stuck_since[0] = None
                return None

            if cluster.watch_until(f"deployment {name} in namespace {self.namespace}",
                                   cluster.apps().list_namespaced_deployment, self.namespace, ready,
                                   deadline - time.monotonic(), resync_s=RESYNC_S,
                                   field_selector=f"metadata.name={name}") is None:
                pending = names[names.index(name):]
                reasons = "; ".join(f"deployment/{n}: {self._workload_health(n).summary}" for n in pending)
                raise TargetError(f"not ready within {timeout_s:g}s in {self.namespace}: {reasons}")
            progress(f"{name}: ready ({seen[0].summary if seen[0] else 'ready'})")

    def _workload_health(self, name: str, dep: dict | None = None, scaling_is_ready: bool = False) -> "WorkloadHealth":
        """Is one Deployment of the release ready, and if not, why (from its pods, not a guess).

        scaling_is_ready: a Deployment whose every pod runs the current template, at least one
        ready and none stuck, is only adding pods (its autoscaler scaled it out): healthy for
        status, not for a deploy waiting on its own rollout."""
        dep = dep if dep is not None else cluster.get("Deployment", name, self.namespace)
        if dep is None:
            return WorkloadHealth(name, False, False, "absent")
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status", {})
        ready, updated = st.get("readyReplicas", 0), st.get("updatedReplicas", 0)
        current = st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        summary = f"{ready}/{want} ready" + (f", {updated}/{want} updated" if updated < want else "")
        if current and ready == want and updated == want and st.get("replicas", 0) == want:
            return WorkloadHealth(name, True, False, summary)
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"].get("matchLabels", {}).items())
        pods = cluster.list_objects("Pod", self.namespace, labels=selector)
        if scaling_is_ready and current and updated == want and st.get("replicas", 0) == want and ready >= 1 \
                and not any(pod_problem(p) for p in pods):
            return WorkloadHealth(name, True, False, f"{summary}, scaling out")
        for pod in pods:
            problem = pod_problem(pod)
            if problem:
                pod_name = pod["metadata"]["name"]
                last = cluster.pod_logs(self.namespace, pod, tail=3, previous=True).strip().splitlines()
                said = f"; its last log line: {last[-1][:300]}" if last else ""
                return WorkloadHealth(name, False, True, f"{summary}, {pod_name}: {problem}{said}")
        for pod in pods:  # running but failing its readiness probe: the probe's own words
            statuses = pod.get("status", {}).get("containerStatuses", [])
            if statuses and all(cs.get("state", {}).get("running") for cs in statuses) \
                    and not all(cs.get("ready") for cs in statuses):
                events = cluster.list_objects("Event", self.namespace,
                                              fields=f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy")
                latest = sorted(events, key=lambda e: e.get("lastTimestamp") or "")[-1:]
                if latest:
                    return WorkloadHealth(name, False, False, f"{summary}, {pod['metadata']['name']}: "
                                                              f"{latest[0].get('message', '')[:300]}")
        return WorkloadHealth(name, False, False, summary + ("" if current else ", rollout in progress"))

    def _new_pods(self, image: str, dep: dict | None = None) -> list[dict]:
        dep = dep if dep is not None else cluster.get("Deployment", self.workload, self.namespace) or {}
        labels = dep.get("spec", {}).get("selector", {}).get("matchLabels", {})
        if not labels:
            return []
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return [p for p in cluster.list_objects("Pod", self.namespace, labels=selector)
                if p["spec"]["containers"][0]["image"] == image]

    def _new_pod_problem(self, image: str, dep: dict | None = None) -> str | None:
        for pod in self._new_pods(image, dep):
            problem = pod_problem(pod)
            if problem:
                return f"{pod['metadata']['name']}: {problem}"
        return None

    def _failure(self, image: str, reason: str) -> str:
        lines = [f"rollout of {image} to {self.namespace} failed: {reason}"]
        # The pods that are not ready first: with an unchanged image (a probe or setting changed)
        # the healthy old pods run it too, and their events explain nothing.
        pods = sorted(self._new_pods(image), key=lambda p: all(
            c.get("ready") for c in p.get("status", {}).get("containerStatuses", [])))
        for pod in pods[:3]:
            name = pod["metadata"]["name"]
            events = cluster.list_objects("Event", self.namespace, fields=f"involvedObject.name={name}")
            ordered = sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime")
                             or e.get("metadata", {}).get("creationTimestamp") or "")
            shown = ordered[-4:]
            warnings = [e for e in ordered if e.get("type") == "Warning"]
            if warnings and warnings[-1] not in shown:  # the probe's or the kubelet's complaint, always
                shown = [warnings[-1]] + shown[-3:]
            for ev in shown:
                lines.append(f"  {name}: {ev.get('reason')}: {ev.get('message', '')[:200]}")
            restarted = any(c.get("restartCount") for c in pod.get("status", {}).get("containerStatuses", []))
            if restarted:  # a container that started and exited: what it said before it died
                said = cluster.pod_logs(self.namespace, pod, tail=12, previous=True).strip()
                lines += [f"  {name} (last run's log): {line[:200]}" for line in said.splitlines()]
        lines.append("the previous ReplicaSet keeps serving (maxUnavailable 0); fix the image or the probe and deploy again")
        return "\n".join(lines)

    # --- what promotion needs: the running subject, rolling to one, records, a lock -----------

    @cached_property
    def canary(self) -> "KubernetesCanary":
        """The environment's canary Deployment (a canary promotion's second track)."""
        from shipyard.targets.canary import KubernetesCanary

        return KubernetesCanary(self)

    def subject(self) -> str:
        """What the API serves here (an image name@sha256:...), or "" when nothing does.

        Whether the rest of the release is healthy is status()'s question, not this one's: a
        rollback must know what production serves even while one of its workers is down."""
        dep = cluster.get("Deployment", self.workload, self.namespace)
        if dep is None or dep.get("status", {}).get("readyReplicas", 0) == 0:
            return ""
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    def roll_to(self, subject: str, progress: Callable[[str], None] = lambda _: None) -> None:
        from shipyard.image import resolve_deployable
        from shipyard.manifests import ImageRef

        reference, notes = resolve_deployable(subject)
        self.deploy(ImageRef.parse(reference), notes, progress)

    def _with_jobs_image(self, image: "ImageRef", annotations: dict[str, str],
                         progress: Callable[[str], None]) -> dict[str, str]:
        """With image.serving_lock, the jobs image to pin beside `image`: the one recorded with it
        here, else the one an environment runs beside it (a promotion from another machine: the
        source's Deployment carries it). Without either the jobs run `image`, and the deploy says so."""
        from shipyard import manifests

        if not self.project.image.serving_lock or manifests.ANNOTATION_JOBS_IMAGE in annotations:
            return annotations
        jobs = self._jobs_image_deployed_with(str(image))
        if jobs:
            return {**annotations, manifests.ANNOTATION_JOBS_IMAGE: jobs}
        progress(f"warning: no jobs image is known for {image} (no record here, and no environment runs it with "
                 "one): batch Jobs and stream workers will run it too, and a serving image holds only what the server "
                 "imports (build here: `shipyard image build`)")
        return annotations

    def _jobs_image_deployed_with(self, reference: str) -> str:
        from shipyard import manifests
        from shipyard.config import known_environments, load_environment

        for name in known_environments():
            env = load_environment(name, self.project)
            dep = (cluster.get("Deployment", self.workload, env.namespace) if env.namespace else None) or {}
            if dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image") == reference:
                jobs = dep.get("metadata", {}).get("annotations", {}).get(manifests.ANNOTATION_JOBS_IMAGE)
                if jobs:
                    return jobs
        return ""

    def status(self) -> Status:
        """Ready only when every Deployment of the release is; otherwise the state names the
        workloads that are not, so a crash-looping worker cannot hide behind a healthy API."""
        deps = cluster.list_objects("Deployment", self.namespace, labels=MANAGED_SELECTOR)
        dep = next((d for d in deps if d["metadata"]["name"] == self.workload), None)
        if dep is None:
            return Status(self.env.name, "kubernetes", "absent")
        health = [self._workload_health(d["metadata"]["name"], d, scaling_is_ready=True) for d in deps]
        problems = tuple(f"deployment/{h.name}: {h.summary}" for h in health if not h.ready)
        state = "ready" if not problems else "not ready: " + ", ".join(h.name for h in health if not h.ready)
        notes = dep["metadata"].get("annotations", {})
        return Status(self.env.name, "kubernetes", state, notes.get(ANNOTATION_BENTO, ""),
                      notes.get(ANNOTATION_MODEL, ""), "", None,
                      dep["metadata"]["creationTimestamp"].replace("Z", "+00:00"),
                      dep["spec"]["template"]["spec"]["containers"][0]["image"], problems)

    def make_namespace(self) -> None:
        """The environment's Namespace as its manifests declare it (labels and all), alone: what a
        first promotion needs before it can take the lock there."""
        from shipyard import manifests

        namespaces = [o for o in manifests.render(self.env.name) if o["kind"] == "Namespace"]
        if not namespaces:
            raise TargetError(f"namespace {self.namespace} does not exist and {self.env.name}'s manifests declare "
                              "none: create it, or add a Namespace to the overlay")
        cluster.apply(namespaces)

    def scale_watch(self) -> "ScaleWatch":
        """The workload's replicas and its autoscaler's view, sampled while a suite runs."""
        from shipyard.targets.scale import ScaleWatch

        return ScaleWatch(self.namespace, self.workload)

    @property
    def service_url(self) -> str:
        """The Service as the namespace's pods call it: by its cluster DNS name."""
        k8s = self.project.kubernetes
        return f"http://{k8s.service}.{self.namespace}.svc.cluster.local:{k8s.port}"

    def suite_runner(self) -> AbstractContextManager["PodRunner"]:
        """The suites run as pods in the namespace, against the Service (targets.suite_pods)."""
        from shipyard.targets.suite_pods import pod_runner

        return pod_runner(self)
