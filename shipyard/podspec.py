"""Pods and Jobs as shipyard runs them in a project's namespaces (the suite runners, the traffic
sender) and writes them for a project (`shipyard init`'s base): one builder, so every pod meets the
restricted Pod Security profile those namespaces enforce, the same way everywhere.

Plain dicts, the shape server-side apply takes and `kustomize` renders: the manifests a project
keeps are YAML, and the objects shipyard adds are applied beside them.
"""

from __future__ import annotations

from typing import Any

USER = 10001  # the images' non-root user (BentoML's and the Debian base's)

def container_security() -> dict[str, Any]:
    """What the restricted profile asks of every container (a fresh dict each time: YAML written
    from one shared object would carry anchors into a project's manifests)."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def pod_security(fs_group: bool = False) -> dict[str, Any]:
    """The pod's securityContext: non-root USER, the runtime's default seccomp profile; fs_group
    when its volumes must be writable by that user."""
    return {"runAsNonRoot": True, "runAsUser": USER, "runAsGroup": USER, **({"fsGroup": USER} if fs_group else {}),
            "seccompProfile": {"type": "RuntimeDefault"}}


def job(name: str, namespace: str, labels: dict[str, str], containers: list[dict[str, Any]],
        volumes: list[dict[str, Any]], deadline_s: int, ttl_s: int, pods: int = 1,
        pod_labels: dict[str, str] | None = None, **pod_spec: Any) -> dict[str, Any]:
    """A Job of `pods` restricted pods that run once (no retry: backoffLimit 0), bounded by
    deadline_s, kept ttl_s after it ends for its logs. Each container gets the restricted
    securityContext; pod_spec adds to the pod's spec (e.g. terminationGracePeriodSeconds)."""
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"completions": pods, "parallelism": pods, "backoffLimit": 0, "activeDeadlineSeconds": deadline_s,
                     "ttlSecondsAfterFinished": ttl_s,
                     "template": {"metadata": {"labels": dict(pod_labels or labels)}, "spec": {
                         "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                         "securityContext": pod_security(),
                         "containers": [{**c, "securityContext": container_security()} for c in containers],
                         "volumes": volumes, **pod_spec}}}}
