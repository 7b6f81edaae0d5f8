"""kubectl where it is the right tool, and only there: rendering a kustomization (kubectl's
built-in kustomize), showing what an apply would change (`diff --server-side`), and running a
command in a pod with bytes in and out (the batch files' tar archives). Everything else reaches the
cluster through the typed client in shipyard/cluster.py. Every command run here can be replayed
by hand from the error message.

Why exec stays here: the `kubernetes` client's exec stream (37.0.3), measured on the local
cluster, returned 41.2 MB of a 50 MB stdout, in 21 s; `kubectl exec` returned all 50 MB in 0.8 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

from shipyard.cluster import FIELD_MANAGER, ClusterError


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


def _run(*args: str, input_text: str | None = None, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([kubectl_path(), *args], input=input_text, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"kubectl {' '.join(args)} timed out after {timeout:g}s") from exc


def kustomize(folder: str) -> subprocess.CompletedProcess:
    """`kubectl kustomize FOLDER`: the rendered objects as YAML on stdout (no cluster involved)."""
    return _run("kustomize", folder, timeout=60)


def diff_server_side(rendered_yaml: str) -> subprocess.CompletedProcess:
    """`kubectl diff --server-side`: what applying the objects would change, as the API server
    itself would apply them (exit 0: nothing, 1: the diff on stdout, >1: an error)."""
    return _run("diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
                input_text=rendered_yaml, timeout=120)


def exec_in(namespace: str, pod: str, command: list[str], stdin: BinaryIO | None = None,
            stdout: BinaryIO | None = None, timeout: float = 120) -> str:
    """`kubectl exec` of `command` in the pod: bytes from `stdin` in, stdout into the file `stdout`
    (an archive never sits in memory) or returned as text; a non-zero exit is a ClusterError with
    its stderr."""
    args = ["exec", *(["-i"] if stdin is not None else []), pod, "-n", namespace, "--", *command]
    try:
        result = subprocess.run([kubectl_path(), *args], stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"kubectl {' '.join(args[:6])} timed out after {timeout:g}s") from exc
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:8])} failed: {result.stderr.decode(errors='replace').strip()[-500:]}")
    return result.stdout.decode(errors="replace") if stdout is None else ""
