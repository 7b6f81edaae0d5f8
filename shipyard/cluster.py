"""The cluster's API through the `kubernetes` client: typed objects in and out, and failures told
apart by their HTTP status (not by the words of a command's stderr), each with a message that
names the object and the fix.

This is where shipyard's cluster calls move as they leave `shipyard/kubectl.py` (issue #32); the
promotion Lease is the first. kubectl stays where it is the right tool: kustomize rendering and
`diff --server-side`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar

from shipyard.kubectl import ClusterError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, BatchV1Api, CoordinationV1Api, CoreV1Api

T = TypeVar("T")

# (connect, read) seconds for every call: an unreachable API server is told in seconds, not minutes.
REQUEST_TIMEOUT = (5, 30)

NOT_FOUND, CONFLICT, FORBIDDEN, UNPROCESSABLE = 404, 409, 403, 422
FIELD_MANAGER = "shipyard"


class ApiError(ClusterError):
    """The API server answered a call with an error; `status` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _kubeconfig() -> str | None:
    """KUBECONFIG (one file or a colon-separated list, as kubectl reads it), else the client's default."""
    return os.environ.get("KUBECONFIG") or None


@functools.lru_cache(maxsize=4)
def _client_for(kubeconfig: str | None) -> "ApiClient":
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "~/.kube/config"
        raise ClusterError(f"cannot read the kubeconfig {where}: {exc}\n"
                           "start the local cluster (make cluster-up; export KUBECONFIG=$PWD/.shipyard/cluster/"
                           "admin.kubeconfig) or point KUBECONFIG at yours") from exc


def api_client() -> "ApiClient":
    """One client per kubeconfig in this process (its connection pool is reused by every call)."""
    return _client_for(_kubeconfig())


def coordination() -> "CoordinationV1Api":
    from kubernetes.client import CoordinationV1Api

    return CoordinationV1Api(api_client())


@functools.lru_cache(maxsize=4)
def _dynamic_for(kubeconfig: str | None) -> Any:
    """The dynamic client (any kind, found by discovery). Its discovery cache goes to a folder of
    this process's own: the client's default, one file in /tmp per API server address, is written
    without care by every process at once and logs an error whenever one reads another's half."""
    import atexit
    import shutil
    import tempfile

    from kubernetes.dynamic import DynamicClient

    folder = tempfile.mkdtemp(prefix="shipyard-discovery-")
    atexit.register(shutil.rmtree, folder, True)
    return DynamicClient(_client_for(kubeconfig), cache_file=os.path.join(folder, "discovery.json"))


def _name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f" in namespace {meta['namespace']}" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?').lower()} {meta.get('name', '?')}{where}"


def apply(objects: Iterable[dict[str, Any]]) -> None:
    """Server-side apply of each object in order (a Namespace before what lives in it), as field
    manager `shipyard`, taking over fields another manager set (kubectl's --force-conflicts): the
    objects are shipyard's to declare."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    with translated("discovering the cluster's API"):
        dynamic = _dynamic_for(_kubeconfig())
    for obj in objects:
        what = _name_of(obj)
        try:
            with translated(f"discovering {obj.get('apiVersion')} {obj.get('kind')}"):
                resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise ClusterError(f"{what}: this cluster serves no {obj['kind']} in {obj['apiVersion']}: install what "
                               "provides it (its CRD or add-on), or remove it from the manifests") from None
        namespace = obj.get("metadata", {}).get("namespace") if resource.namespaced else None
        if resource.namespaced and not namespace:
            raise ClusterError(f"{what}: a {obj['kind']} lives in a namespace and this one names none: set "
                               "`namespace:` in the overlay's kustomization.yaml")
        call(f"applying {what}", dynamic.server_side_apply, resource, body=obj, namespace=namespace,
             field_manager=FIELD_MANAGER, force_conflicts=True)


def core() -> "CoreV1Api":
    from kubernetes.client import CoreV1Api

    return CoreV1Api(api_client())


def batch() -> "BatchV1Api":
    from kubernetes.client import BatchV1Api

    return BatchV1Api(api_client())


def as_dict(obj: Any) -> dict[str, Any]:
    """A typed object as the API serves it (camelCase keys, as kubectl's JSON): the form the
    checks on pods and Jobs read."""
    return api_client().sanitize_for_serialization(obj)


def watch_until(what: str, list_method: Any, namespace: str, until: Callable[[list[dict[str, Any]]], T | None],
                timeout_s: float, **selectors: str) -> T | None:
    """Watches the objects `list_method` lists in `namespace` (label_selector=, field_selector=)
    and returns the first value `until(objects)` gives that is not None, called with every object
    as it now is each time one changes. None when `timeout_s` passes first. A watch the server
    ends (its own timeout, or 410 Gone after a compaction) is started again from a fresh list."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        objects: dict[str, dict[str, Any]] = {}
        stream = watch.Watch()
        try:
            with translated(what):
                # Without a resourceVersion the server first sends every existing object (ADDED).
                for event in stream.stream(list_method, namespace, timeout_seconds=max(1, int(min(remaining, 60))),
                                           _request_timeout=(REQUEST_TIMEOUT[0], min(remaining, 60) + 10),
                                           **selectors):
                    obj = as_dict(event["object"])
                    name = obj.get("metadata", {}).get("name", "")
                    if event["type"] == "DELETED":
                        objects.pop(name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[name] = obj
                    else:  # BOOKMARK, ERROR: nothing about the objects themselves
                        continue
                    found = until(list(objects.values()))
                    if found is not None:
                        return found
                    if time.monotonic() > deadline:
                        break
        except ApiError as exc:
            if exc.status != 410:  # Gone: the watch fell behind a compaction; list again
                raise
        except ApiException as exc:  # raised by the stream itself for an ERROR event
            if exc.status != 410:
                raise explain(exc, what) from None
        finally:
            stream.stop()
    return None


def job_outcome(namespace: str, name: str, timeout_s: float) -> str | None:
    """"Complete" or "Failed" once Job `name` has ended (watched, not polled), None if it has not
    within timeout_s."""

    def ended(jobs: list[dict[str, Any]]) -> str | None:
        for job in jobs:
            for condition in job.get("status", {}).get("conditions") or []:
                if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
                    return condition["type"]
        return None

    return watch_until(f"job {name} in namespace {namespace}", batch().list_namespaced_job, namespace, ended,
                       timeout_s, field_selector=f"metadata.name={name}")


def call(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """`method(*args, **kwargs)` on the API, bounded by REQUEST_TIMEOUT; an error becomes ApiError
    (the server answered) or ClusterError (it could not be reached), naming `what` (e.g. "lease
    shipyard-promotion in fraud-production") and the fix."""
    with translated(what):
        return method(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """The client's exceptions inside as ApiError or ClusterError about `what`."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise explain(exc, what) from None
    except HTTPError as exc:  # refused, reset, timed out: no answer at all
        raise ClusterError(f"cannot reach the cluster of kubeconfig {_kubeconfig() or '~/.kube/config'} "
                           f"({what}): {exc}\nstart the local cluster (make cluster-up; export KUBECONFIG="
                           "$PWD/.shipyard/cluster/admin.kubeconfig) or point KUBECONFIG at yours") from None


def explain(exc: Any, what: str) -> ApiError:
    """The API server's answer as one sentence that says what to do."""
    import json

    status = int(getattr(exc, "status", 0) or 0)
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") or getattr(exc, "reason", "") or "no message"
    if status == NOT_FOUND:
        text = f"{what}: not found ({message})"
    elif status == FORBIDDEN:
        text = (f"{what}: forbidden ({message}); the kubeconfig's user needs that permission: "
                "grant it with a Role and RoleBinding in the namespace")
    elif status == CONFLICT:
        text = f"{what}: conflict ({message}); someone else changed it meanwhile"
    elif status == UNPROCESSABLE:
        causes = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}"
                           for c in (body.get("details") or {}).get("causes", []))
        text = f"{what}: rejected as invalid ({causes or message})"
    else:
        text = f"{what}: the API server answered {status} ({message})"
    return ApiError(text, status)
