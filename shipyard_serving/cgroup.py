"""The CPU this process may use: its cgroup's CFS quota (a pod's `limits.cpu`), in CPUs.

Admission needs it before the quota shows: a server at light load is never throttled, so the
share of CPU it measures is the whole core until an overload starts, and the first burst of an
overload would be admitted as if the core were its own (under a 0.5 CPU quota, twice the wait it
was admitted for). The quota is the limit the kernel will enforce, so it caps the share at once.
cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`); every ancestor's limit
counts (a pod's cgroup limits its containers'); no quota, or no readable cgroup: None."""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _v2_limit(group: Path) -> float | None:
    try:
        quota, period = (group / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_limit(group: Path) -> float | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def quota_cpus(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = ROOT) -> float | None:
    """The tightest CFS quota over this process's cgroup and its ancestors, in CPUs."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2's unified hierarchy
            base, read = root, _v2_limit
        elif "cpu" in controllers.split(","):
            base = next((root / name for name in (controllers, "cpu", "cpu,cpuacct") if (root / name).is_dir()), None)
            if base is None:
                continue
            read = _v1_limit
        else:
            continue
        group = base / path.lstrip("/")
        for level in [group, *group.parents]:
            limit = read(level)
            if limit is not None:
                limits.append(limit)
            if level == base:
                break
    return min(limits) if limits else None
