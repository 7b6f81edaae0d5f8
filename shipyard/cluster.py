"""The cluster's API through the `kubernetes` client: typed objects in and out, and failures told
apart by their HTTP status (not by the words of a command's stderr), each with a message that
names the object and the fix.

This is where shipyard's cluster calls move as they leave `shipyard/kubectl.py` (issue #32); the
promotion Lease is the first. kubectl stays where it is the right tool: kustomize rendering and
`diff --server-side`.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from shipyard.kubectl import ClusterError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoordinationV1Api, CoreV1Api

# (connect, read) seconds for every call: an unreachable API server is told in seconds, not minutes.
REQUEST_TIMEOUT = (5, 30)

NOT_FOUND, CONFLICT, FORBIDDEN, UNPROCESSABLE = 404, 409, 403, 422


class ApiError(ClusterError):
    """The API server answered a call with an error; `status` is its HTTP status."""

    def __init__(self, message: str, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


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


def core() -> "CoreV1Api":
    from kubernetes.client import CoreV1Api

    return CoreV1Api(api_client())


def call(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """`method(*args, **kwargs)` on the API, bounded by REQUEST_TIMEOUT; an error becomes ApiError
    (the server answered) or ClusterError (it could not be reached), naming `what` (e.g. "lease
    shipyard-promotion in fraud-production") and the fix."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return method(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
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
    reason = body.get("reason", "")
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
    return ApiError(text, status, reason)
