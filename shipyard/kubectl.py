"""kubectl, with JSON in and out: where it is the right tool (kustomize rendering, `diff
--server-side`, copying files with `exec ... tar`), and the calls not yet moved to the typed
client in shipyard/cluster.py (issue #32: the promotion Lease has moved; the rest follow).
Every command it runs can be replayed by hand from the error message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, BinaryIO



class ClusterError(Exception):
    """kubectl is missing, the cluster is unreachable, or a call failed (exit code 1)."""


def kubectl_path() -> str:
    """`SHIPYARD_KUBECTL`, else kubectl on PATH, else the local cluster's own build (in
    `SHIPYARD_CLUSTER_STATE`, or the project's state folder)."""
    from shipyard.project import ProjectError, current_project

    try:
        project = current_project()
        own = str(project.path(project.state) / "cluster" / "bin" / "kubectl")
    except ProjectError:
        own = None
    cluster_state = os.environ.get("SHIPYARD_CLUSTER_STATE")
    for candidate in (os.environ.get("SHIPYARD_KUBECTL"), shutil.which("kubectl"),
                      cluster_state and str(Path(cluster_state) / "bin" / "kubectl"), own):
        if candidate and Path(candidate).exists():
            return candidate
    raise ClusterError("kubectl not found: install it, set SHIPYARD_KUBECTL, or run `make cluster-up`")


def run(*args: str, input_text: str | None = None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [kubectl_path(), *args]
    try:
        result = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"kubectl {' '.join(args[:3])} timed out after {timeout:g}s") from exc
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def get_json(*args: str, timeout: float = 60) -> dict[str, Any] | None:
    """`kubectl get ... -o json`, or None when the object does not exist."""
    result = run("get", *args, "-o", "json", timeout=timeout, check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        check_reachable()  # the usual cause, with the usual fix
        raise ClusterError(f"kubectl get {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def check_reachable() -> None:
    result = run("get", "--raw", "/readyz", "--request-timeout=5s", timeout=15, check=False)
    if result.returncode != 0:
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
        raise ClusterError(
            f"cannot reach the cluster of kubeconfig {where}: {last}\n"
            "start the local cluster (make cluster-up; export KUBECONFIG=$PWD/.shipyard/cluster/admin.kubeconfig) "
            "or point KUBECONFIG at yours"
        )


def stream(*args: str, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
           timeout: float = 600) -> None:
    """kubectl with bytes in and out through files (copying files into and out of a pod with
    `exec ... tar`: the payload never sits in memory)."""
    cmd = [kubectl_path(), *args]
    try:
        result = subprocess.run(cmd, stdin=stdin, stdout=stdout if stdout is not None else subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"kubectl {' '.join(args[:4])} timed out after {timeout:g}s") from exc
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:6])} failed: {result.stderr.decode(errors='replace').strip()}")
