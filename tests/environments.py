"""Test environments: gates that judge what a test is about, never how fast this machine is.

A latency, throughput or refusal-time gate judges speed. On two cores shared by the control
plane, the pods and the load generator, the same build measures 90 ms one run and 101 ms the
next, so a test that asserts a verdict built on such a gate passes or fails at random and says
nothing about the code (issue #28). Speed is judged where it means something: `make bench`
(ratios against baselines of the same run) and the staging gates a user runs in their own
cluster, which stay as `environments/` declares them.

So a test environment keeps every behaviour gate (failures, error rates, counts, model quality,
schema checks) and bounds each timing metric only to catch a hang. Its deadline is long enough
that the admission control never refuses a healthy request because a neighbour took the core:
refusal itself is tested directly (tests/integration/test_overload.py) with deadlines a request
cannot meet on any machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

# An answer slower than this is a hang, not a slow answer.
HANG_MS = 30_000
# The longest a request may be given (the serving layer's upper bound for a deadline).
TEST_DEADLINE_MS = 60_000

# Timing metrics, each with the bound that catches only a hang. `rps` keeps a floor above zero: a
# load phase that got no answer at all is a failure of behaviour.
_HANG_BOUNDS: dict[str, dict[str, float]] = {
    "p50_ms": {"max": HANG_MS}, "p95_ms": {"max": HANG_MS}, "p99_ms": {"max": HANG_MS},
    "answered_p99_ms": {"max": HANG_MS},
    "rps": {"min": 0.5},
    "recovery_s": {"max": 600},
}
# Timing metrics with no hang to catch: a ratio of two latencies, and the time refusals took
# (with a deadline no request misses there is none to time).
_DROPPED = {"rejection_p99_ms", "p99_ratio"}


def behaviour_gates(gates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`gates` with every timing bound replaced by a hang bound; every other gate unchanged."""
    return {suite: {metric: dict(_HANG_BOUNDS.get(metric, bound)) for metric, bound in metrics.items()
                    if metric not in _DROPPED}
            for suite, metrics in gates.items()}


# The stress suite under the test deadline: nothing is refused, so an overload is a queue the
# recovery phase must drain. 1.5 x the saturation keeps that queue to half the overload's length
# (its answers well inside the hang bound); the recovery may take up to two minutes, ended as soon
# as the service is back. Its p95 limit is the hang bound: recovered once every answer in a window
# is a 200.
TEST_STRESS = {"p95_ms_limit": HANG_MS, "overload_factor": 1.5, "recovery_s": 120}


def behaviour_environment(settings: dict[str, Any]) -> dict[str, Any]:
    """An environment.yaml's settings made into a test environment's: behaviour gates (the
    environment's own and its canary's), the longest deadline, and TEST_STRESS."""
    settings = dict(settings, deadline_ms=TEST_DEADLINE_MS, gates=behaviour_gates(settings.get("gates", {})))
    suites = {name: dict(options) for name, options in settings.get("suites", {}).items()}
    suites["stress"] = dict(suites.get("stress", {}), **TEST_STRESS)
    settings["suites"] = suites
    canary = (settings.get("promotion") or {}).get("canary")
    if canary:
        settings["promotion"] = dict(settings["promotion"], canary=dict(
            canary, gates=behaviour_gates({"canary": canary["gates"]})["canary"]))
    return settings


def rewrite_environment(folder: Path) -> None:
    """Makes `folder`'s environment.yaml a test environment's, in place: behaviour gates, and a
    local port of the kernel's choosing (`shipyard init` numbers environments from 3100 up, as a
    user wants them; tests running side by side would all get the same ones)."""
    from tests.conftest import free_port

    path = folder / "environment.yaml"
    environment = behaviour_environment(yaml.safe_load(path.read_text()))
    if isinstance(environment.get("local"), dict) and "port" in environment["local"]:
        environment["local"]["port"] = free_port()
    path.write_text(yaml.safe_dump(environment, sort_keys=False))


# Suite lengths for tests that take a project through verify to prove the toolkit handles it (the
# corpus, the install on 3.12): every suite runs and every gate is judged with data, for seconds.
# The README's `--short` is sized for a person trying shipyard out; its 200 contract examples per
# operation prove nothing more here and cost a core each, ten times over. Load keeps --short's
# 10 s: 5 s, on a fresh machine's cores shared with the cluster's build, once ended before locust
# had sent a request (phrasebook: rps 0, error_rate no data). The stress ramp triples from 50/s in
# 3 s steps and overloads for 4 s.
QUICK_SUITES: dict[str, dict[str, Any]] = {
    "load": {"duration_s": 10},
    "stress": {"start_rps": 50, "step_factor": 3, "step_s": 3, "overload_s": 4},
}


def quick_suites(folder: Path) -> None:
    """`folder`'s environment.yaml with QUICK_SUITES' settings (its other settings and its gates
    kept), for `shipyard verify` run without `--short`."""
    path = folder / "environment.yaml"
    environment = yaml.safe_load(path.read_text())
    suites = environment.setdefault("suites", {})
    for name, lengths in QUICK_SUITES.items():
        suites[name] = dict(suites.get(name) or {}, **lengths)
    path.write_text(yaml.safe_dump(environment, sort_keys=False))


def patch_pod_deadline(overlay: Path) -> None:
    """The overlay's API pods read the same deadline (SHIPYARD_DEADLINE_MS), by a strategic merge
    patch on the base's API Deployment and its serving container, found in the rendered base."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    base = next(overlay / r for r in kustomization["resources"] if (overlay / r / "kustomization.yaml").is_file())
    deployment = _api_deployment(base)
    container = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": deployment["metadata"]["name"]},
             "spec": {"template": {"spec": {"containers": [
                 {"name": container, "env": [{"name": "SHIPYARD_DEADLINE_MS", "value": f"{TEST_DEADLINE_MS}"}]}]}}}}
    kustomization.setdefault("patches", []).append({"patch": yaml.safe_dump(patch, sort_keys=False)})
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))


def _api_deployment(base: Path) -> dict[str, Any]:
    """The base's Deployment that serves the API: the one whose pods expose a port named http."""
    for resource in yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]:
        path = base / resource
        if not path.is_file():
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "Deployment":
                containers = document["spec"]["template"]["spec"]["containers"]
                if any(port.get("name") == "http" for port in containers[0].get("ports", [])):
                    return document
    raise AssertionError(f"no Deployment serving a port named http in {base}")


def copy_environments(source: Path, root: Path, names: tuple[str, ...] = ("staging", "production")) -> Path:
    """The project's own environments copied under `root` as test environments (the same overlays,
    namespaces and suites, the base referenced where it is), for SHIPYARD_ENVIRONMENTS=root."""
    for name in names:
        shutil.copytree(source / name, root / name, dirs_exist_ok=True)
        overlay = root / name / "kustomization.yaml"
        text = overlay.read_text()
        base = os.path.relpath((source / name / "../../k8s/base").resolve(), root / name)
        overlay.write_text(text.replace("../../k8s/base", base))
        rewrite_environment(root / name)
        patch_pod_deadline(root / name)
    return root
