"""The cluster's API through the `kubernetes` client: typed objects in and out, and failures told
apart by their HTTP status (not by the words of a command's stderr), each with a message that
names the object and the fix.

Every call shipyard makes to a cluster's API goes through here: reads, lists, server-side
applies, creates, patches, deletes, watches (never sleep loops), logs, the API server's proxy.
kubectl stays where it is the right tool, in shipyard/kubectl.py: kustomize rendering,
`diff --server-side`, and exec with bytes in and out (the batch files).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoordinationV1Api, CoreV1Api

T = TypeVar("T")

# (connect, read) seconds for every call: an unreachable API server is told in seconds, not minutes.
REQUEST_TIMEOUT = (5, 30)

NOT_FOUND, CONFLICT, FORBIDDEN, UNPROCESSABLE = 404, 409, 403, 422
FIELD_MANAGER = "shipyard"


class ClusterError(Exception):
    """The cluster could not be reached, or refused or failed a call: the message names the object
    and the fix (exit code 1)."""


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


# The kinds shipyard reads, lists, creates, patches and deletes: (API class, method suffix, namespaced).
# Typed methods, not discovery: no round trips to learn what every cluster serves these under.
_KINDS: dict[str, tuple[str, str, bool]] = {
    "ConfigMap": ("CoreV1Api", "config_map", True),
    "Event": ("CoreV1Api", "event", True),
    "Namespace": ("CoreV1Api", "namespace", False),
    "PersistentVolumeClaim": ("CoreV1Api", "persistent_volume_claim", True),
    "Pod": ("CoreV1Api", "pod", True),
    "Service": ("CoreV1Api", "service", True),
    "Deployment": ("AppsV1Api", "deployment", True),
    "CronJob": ("BatchV1Api", "cron_job", True),
    "Job": ("BatchV1Api", "job", True),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler", True),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy", True),
}


def _method(kind: str, verb: str) -> tuple[Any, bool]:
    """The typed client's `verb` method for `kind` (read_namespaced_deployment, ...), and
    whether the kind lives in a namespace."""
    import kubernetes.client

    if kind not in _KINDS:  # a programming error: every kind shipyard touches is in the table
        raise ValueError(f"{kind} is not among the kinds shipyard reads: {', '.join(_KINDS)}")
    api_class, suffix, namespaced = _KINDS[kind]
    api = getattr(kubernetes.client, api_class)(api_client())
    return getattr(api, f"{verb}_namespaced_{suffix}" if namespaced else f"{verb}_{suffix}"), namespaced


def _about(kind: str, name: str | None, namespace: str | None, selector: str = "") -> str:
    what = f"{kind.lower()} {name}" if name else f"the {kind.lower()}s" + (f" with {selector}" if selector else "")
    return what + (f" in namespace {namespace}" if namespace else "")


def _json_of(response: Any) -> Any:
    """The server's own JSON (camelCase, as kubectl prints it): what shipyard's checks read. Read
    undeserialized: the typed models cost CPU and say nothing more."""
    import json

    return json.loads(response.data)


def get(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    """One object as the API server serves it, or None when it does not exist."""
    method, namespaced = _method(kind, "read")
    try:
        return _json_of(call(_about(kind, name, namespace), method, *((name, namespace) if namespaced else (name,)),
                             _preload_content=False))
    except ApiError as exc:
        if exc.status == NOT_FOUND:
            return None
        raise


def list_objects(kind: str, namespace: str, labels: str = "", fields: str = "") -> list[dict[str, Any]]:
    """The objects of `kind` in `namespace` matching the label and field selectors (empty: all)."""
    method, _ = _method(kind, "list")
    selectors = {k: v for k, v in (("label_selector", labels), ("field_selector", fields)) if v}
    found = _json_of(call(_about(kind, None, namespace, ", ".join(filter(None, (labels, fields)))), method, namespace,
                          _preload_content=False, **selectors))
    return found.get("items", [])


def create(obj: dict[str, Any]) -> None:
    """Creates `obj` (a Pod or Job whose name is its own: never taken over like an apply), sent as
    written (the dynamic client: the typed one would first rebuild it as its own model)."""
    with translated("discovering the cluster's API"):
        dynamic = _dynamic_for(_kubeconfig())
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    call(f"creating {_name_of(obj)}", resource.create, body=obj, namespace=obj["metadata"].get("namespace"))


def patch(kind: str, name: str, namespace: str, body: dict[str, Any]) -> None:
    """A JSON merge patch of the fields in `body` (an annotation, a Job's suspend)."""
    method, _ = _method(kind, "patch")
    call(f"patching {_about(kind, name, namespace)}", method, name, namespace, body,
         _content_type="application/merge-patch+json")


def delete(kind: str, namespace: str, name: str | None = None, labels: str = "",
           cascade: str = "Background") -> list[str]:
    """Deletes `name`, or every object of `kind` matching `labels`, with its dependents (a Job's
    pods: the API's own default for Jobs orphans them). Absent objects are not an error. Returns
    the names it asked to delete; `wait_gone` waits for them."""
    if name is None and not labels:
        raise ValueError("delete needs a name or a label selector")
    method, _ = _method(kind, "delete")
    names = [name] if name else [o["metadata"]["name"] for o in list_objects(kind, namespace, labels)]
    for each in names:
        try:
            call(f"deleting {_about(kind, each, namespace)}", method, each, namespace, propagation_policy=cascade)
        except ApiError as exc:
            if exc.status != NOT_FOUND:
                raise
    return names


def wait_gone(kind: str, namespace: str, names: list[str], timeout_s: float) -> bool:
    """True once none of `names` exists (finalizers and dependents done), False after timeout_s."""
    if not names:
        return True
    method, _ = _method(kind, "list")
    pending = set(names)
    done = watch_until(_about(kind, None, namespace), method, namespace,
                       lambda objs: True if not pending & {o["metadata"]["name"] for o in objs} else None, timeout_s)
    return bool(done)


def logs(namespace: str, pod: str, container: str | None = None, tail: int | None = None,
         previous: bool = False) -> str:
    """A container's log (its last run's with previous=True); "" when there is none to read (the
    pod is gone, or the container has not run): a log is evidence to show, never a step to fail."""
    kwargs: dict[str, Any] = {"previous": previous, "_preload_content": False}
    if container:
        kwargs["container"] = container
    if tail is not None:
        kwargs["tail_lines"] = tail
    try:
        response = call(f"the log of pod {pod} in namespace {namespace}", core().read_namespaced_pod_log, pod,
                        namespace, **kwargs)
    except ApiError:
        return ""
    return response.data.decode(errors="replace")


def pod_logs(namespace: str, pod: dict[str, Any], tail: int | None = None, previous: bool = False) -> str:
    """Every container's log of `pod`, one after the other (kubectl's --all-containers)."""
    containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
    return "".join(logs(namespace, pod["metadata"]["name"], c if len(containers) > 1 else None, tail, previous)
                   for c in containers)


def job_pod(namespace: str, job: str) -> dict[str, Any] | None:
    """The Job's newest pod (a retried Job's last attempt), as `kubectl logs job/NAME` picks one."""
    pods = list_objects("Pod", namespace, labels=f"batch.kubernetes.io/job-name={job}")
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)


def job_logs(namespace: str, job: str, tail: int | None = None) -> str:
    """The log of the Job's newest pod, "" when it has none."""
    pod = job_pod(namespace, job)
    return "" if pod is None else pod_logs(namespace, pod, tail)


def follow_logs(namespace: str, pod: str, read_timeout_s: float) -> Any:
    """The pod's log as a stream that ends when its container does (an urllib3 response; read it
    with `.stream()`). The call returns once the server has answered, so what the container says
    from then on is in it."""
    return call(f"following the log of pod {pod} in namespace {namespace}", core().read_namespaced_pod_log, pod,
                namespace, follow=True, _preload_content=False, _request_timeout=(REQUEST_TIMEOUT[0], read_timeout_s))


def proxy_get(namespace: str, kind: str, name: str, port: int, path: str) -> str:
    """GET `path` of a pod or Service through the API server's proxy: the namespace's network
    policies keep the host out, and the API server is let in."""
    api = core()
    method = {"Pod": api.connect_get_namespaced_pod_proxy_with_path,
              "Service": api.connect_get_namespaced_service_proxy_with_path}[kind]
    response = call(f"GET /{path} of {_about(kind, name, namespace)} (port {port}) through the API server", method,
                    f"{name}:{port}", namespace, path, _preload_content=False)
    return response.data.decode(errors="replace")


def check_reachable() -> None:
    """The API server answers (its /version), else a ClusterError that says how to start or point at one."""
    from kubernetes.client import VersionApi

    call("reading the API server's version", VersionApi(api_client()).get_code)


def core() -> "CoreV1Api":
    from kubernetes.client import CoreV1Api

    return CoreV1Api(api_client())


def apps() -> "AppsV1Api":
    from kubernetes.client import AppsV1Api

    return AppsV1Api(api_client())


def batch() -> "BatchV1Api":
    from kubernetes.client import BatchV1Api

    return BatchV1Api(api_client())


def as_dict(obj: Any) -> dict[str, Any]:
    """A typed object as the API serves it (camelCase keys, as kubectl's JSON): the form the
    checks on pods and Jobs read."""
    return api_client().sanitize_for_serialization(obj)


def watch_until(what: str, list_method: Any, namespace: str, until: Callable[[list[dict[str, Any]]], T | None],
                timeout_s: float, resync_s: float = 60, **selectors: str) -> T | None:
    """The first value `until(objects)` gives that is not None, called with every object
    `list_method` lists in `namespace` (label_selector=, field_selector=) as it now is: once on a
    fresh list, then each time one changes (watched from that list's version, as an informer
    does: nothing that happens between the two is missed). None when `timeout_s` passes first. A
    watch the server ends (its own timeout, or 410 Gone after a compaction) starts again from a
    fresh list, and so does each `resync_s` (for an `until` that reads more than these objects:
    a rollout's pods may change while its Deployment does not)."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        listed = call(what, list_method, namespace, **selectors)
        objects = {o.metadata.name: as_dict(o) for o in listed.items}
        found = until(list(objects.values()))
        if found is not None:
            return found
        stream = watch.Watch()
        try:
            with translated(what):
                for event in stream.stream(list_method, namespace, resource_version=listed.metadata.resource_version,
                                           timeout_seconds=max(1, int(min(remaining, resync_s))),
                                           _request_timeout=(REQUEST_TIMEOUT[0], min(remaining, resync_s) + 10),
                                           **selectors):
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        continue  # BOOKMARK, ERROR: nothing about the objects themselves
                    obj = as_dict(event["object"])
                    name = obj.get("metadata", {}).get("name", "")
                    if event["type"] == "DELETED":
                        objects.pop(name, None)
                    else:
                        objects[name] = obj
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
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    with translated(what):
        return method(*args, **kwargs)


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
    elif status == 0:  # the client's own failure to open a stream (the exec websocket's handshake)
        text = f"{what}: no answer ({message})"
    else:
        text = f"{what}: the API server answered {status} ({message})"
    return ApiError(text, status)
