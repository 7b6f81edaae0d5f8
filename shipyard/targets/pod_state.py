"""Reading a pod's state the way a release manager needs it: is it stuck (waiting will not help),
and in the kubelet's own words why. Shared by the rollout watch, the canary and the suite pods."""

from __future__ import annotations

from typing import Any

# Waiting reasons that do not resolve by waiting: report them instead of running into a timeout.
STUCK = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
# A pod stuck this long fails what waits on it: long enough for a pull to be retried once.
STUCK_GRACE_S = 20


def pod_problem(pod: dict[str, Any]) -> str | None:
    """A pod state that will not resolve by waiting, in the kubelet's words, or None."""
    for cs in pod.get("status", {}).get("containerStatuses", []):
        waiting = cs.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in STUCK:
            return f"{waiting['reason']}: {waiting.get('message', '')[:300]}".rstrip(": ")
        if cs.get("restartCount", 0) >= 2 and not cs.get("ready"):
            return f"restarted {cs['restartCount']} times"
    return None
