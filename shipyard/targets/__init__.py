"""Where an environment runs: the local target (a server process on loopback) or the Kubernetes
target (the environment's namespace). `target_for` picks one; base.py is the contract."""

from __future__ import annotations

from shipyard.config import Environment
from shipyard.targets.base import Endpoint, Status, Target, TargetError
from shipyard.targets.kubernetes import KubernetesTarget
from shipyard.targets.local import LocalTarget, wait_until_ready

__all__ = ["Endpoint", "KubernetesTarget", "LocalTarget", "Status", "Target", "TargetError", "target_for",
           "wait_until_ready"]


def target_for(env: Environment, override: str | None = None) -> LocalTarget | KubernetesTarget:
    kind = override or env.target
    return LocalTarget(env) if kind == "local" else KubernetesTarget(env)
