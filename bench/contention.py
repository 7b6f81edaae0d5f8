"""make bench's rows under contention: where pods live, not only on a quiet core.

A pod's core is shared with its neighbours, and its CPU is capped by a quota (`limits.cpu`
becomes the cgroup's CFS quota: `cpu.max` on cgroup v2, `cpu.cfs_quota_us` on v1). Neither shows
on the quiet core the other rows use. For each condition below, the FastAPI + ONNX baseline and
shipyard's server (the same ONNX graph, the same schemas) are measured in turn, pinned to the
server core as every row is, wrk and the open-loop generator on the other:

- 32 clients in a closed loop (wrk): answered/s, p99, and the share refused (a refusal of a load
  answered well inside its deadline is a wrongly refused request);
- shipyard's server only: the open-loop overload at 3 x the saturation measured in that condition
  (the baseline has no admission control: an overload only queues it into its clients' timeouts).

The neighbour is a process on the server's core that computes for `duty` of every 10 ms and
sleeps the rest, for at most NEIGHBOUR_MAX_S (it stops by itself). The quota is a cgroup of its
own, removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

NEIGHBOUR_PERIOD_S = 0.010
NEIGHBOUR_MAX_S = 600
CFS_PERIOD_US = 100_000
REFUSED_SHARE_BOUND = 0.001  # the "healthy load refuses below 0.1 %"

NEIGHBOUR = """
import sys, time
duty, period, until = float(sys.argv[1]), float(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < until:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        pass
    time.sleep(period * (1 - duty))
"""


@dataclass(frozen=True)
class Condition:
    name: str
    label: str
    neighbour_duty: float = 0.0  # of the server's core, by a busy neighbour
    quota_cpus: float | None = None  # the server's CFS quota, in CPUs


CONDITIONS = (
    Condition("shared_core_50", "a neighbour busy 50 % of the time on the server's core", neighbour_duty=0.5),
    Condition("quota_1_cpu", "a CPU quota of 1 CPU (limits.cpu: 1)", quota_cpus=1.0),
    Condition("quota_half_cpu", "a CPU quota of 0.5 CPU (limits.cpu: 500m)", quota_cpus=0.5),
)


@contextlib.contextmanager
def neighbour(duty: float, core: int) -> Iterator[None]:
    """A CPU-bound neighbour at a fixed duty cycle on `core`, for the block's duration."""
    if duty <= 0:
        yield
        return
    proc = subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", NEIGHBOUR, str(duty),
                             str(NEIGHBOUR_PERIOD_S), str(NEIGHBOUR_MAX_S)])
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_hierarchy() -> tuple[Path, str]:
    """Where a CPU-quota cgroup goes: cgroup v2's unified tree when it has the cpu controller, else
    v1's cpu hierarchy."""
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return v2, "v2"
    v1 = v2 / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    raise RuntimeError("no cgroup CPU controller found (cgroup v2 with cpu, or v1's /sys/fs/cgroup/cpu): the quota "
                       "rows need one, and root")


@contextlib.contextmanager
def cpu_quota(cpus: float | None) -> Iterator[Path | None]:
    """A cgroup whose processes share `cpus` of CPU time per 100 ms period, as a pod's limits.cpu
    sets it; yields its directory (move a process in with `join`). Removed on the way out."""
    if cpus is None:
        yield None
        return
    root, version = _cpu_hierarchy()
    group = root / f"shipyard-bench-{os.getpid()}"
    group.mkdir(exist_ok=True)
    quota = int(cpus * CFS_PERIOD_US)
    if version == "v2":
        (group / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
    else:
        (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (root / "cgroup.procs").write_text(pid)
        group.rmdir()


def join(group: Path | None, pid: int) -> None:
    """Moves a server and every process it forked into the cgroup."""
    if group is None:
        return
    import psutil

    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        (group / "cgroup.procs").write_text(str(proc.pid))


def throttled(group: Path | None) -> dict[str, float] | None:
    """How often the quota stopped the group (cpu.stat): periods throttled, of all periods."""
    if group is None:
        return None
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines() if len(line.split()) == 2)
    periods, hit = float(stat.get("nr_periods", 0)), float(stat.get("nr_throttled", 0))
    return {"periods": periods, "throttled": hit, "share": round(hit / periods, 3) if periods else 0.0}


def measure(start_server: Any, servers: dict[str, tuple[list[str], dict[str, str]]], bodies: list[bytes],
            quick: bool) -> dict[str, Any]:
    """Every condition, each server in it in turn (`start_server(command, env)` is bench.run's
    context manager yielding (url, pid)): the closed loop, and shipyard's overload."""
    from bench import wrk
    from shipyard.harness import open_loop

    seconds = 3 if quick else 8
    requests = [open_loop.Request("/score", body) for body in bodies]
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {wrk.CLIENT_CORE})  # the open-loop generator runs in this process
    out: dict[str, Any] = {}
    try:
        for condition in CONDITIONS:
            rows: dict[str, Any] = {"label": condition.label}
            for name, (command, env) in servers.items():
                print(f"contention, {condition.name}: {name} ...", file=sys.stderr)
                with start_server(command, env) as (url, pid), cpu_quota(condition.quota_cpus) as group, \
                        neighbour(condition.neighbour_duty, wrk.SERVER_CORE):
                    wrk.pin(pid)
                    join(group, pid)
                    wrk.closed_loop(url, "/score", bodies, 32, 1)  # warm, in the condition
                    closed = wrk.closed_loop(url, "/score", bodies, 32, seconds)
                    sent = closed["requests"]
                    closed["refused_share"] = round(closed["rejected"] / sent, 4) if sent else None
                    row: dict[str, Any] = {"32_clients": closed}
                    if name == "shipyard":
                        row["overload"] = open_loop.overload(url, requests, closed["answered_rps"], quick=quick)
                    row["throttled"] = throttled(group)
                    rows[name] = row
            out[condition.name] = rows
    finally:
        os.sched_setaffinity(0, own)
    return out


def targets(contention: dict[str, Any]) -> list[dict[str, Any]]:
    """The serving-path issue's goals in every condition: healthy load is not refused, shipyard
    answers at least the baseline's answers/s, and its overload holds."""
    from bench.run import overload_targets

    out: list[dict[str, Any]] = []
    for rows in contention.values():
        label, s, b = rows["label"], rows["shipyard"]["32_clients"], rows["baseline"]["32_clients"]
        share = s["refused_share"] or 0.0
        ratio = s["answered_rps"] / b["answered_rps"] if b["answered_rps"] else 0.0
        out += [
            {"target": f"{label}: 32 clients, refused share (answered p99 {s['p99_ms']} ms)",
             "need": f"< {REFUSED_SHARE_BOUND:.1%}", "measured": f"{share:.2%}", "met": share < REFUSED_SHARE_BOUND},
            {"target": f"{label}: 32 clients, answered/s vs the FastAPI+ONNX baseline", "need": ">= 1.0x",
             "measured": f"{ratio:.2f}x ({s['answered_rps']:.0f} vs {b['answered_rps']:.0f})", "met": ratio >= 1.0},
            *[dict(t, target=f"{label}: {t['target']}") for t in overload_targets(rows["shipyard"]["overload"])],
        ]
    return out


def markdown(contention: dict[str, Any]) -> list[str]:
    """The contention section of docs/benchmarks.md."""
    lines = ["", "## Under contention (where pods live)", "",
             "The server pinned to core 0 as above, in each condition; wrk (32 clients, closed loop) and the open-loop",
             "generator on core 1. A neighbour: a process computing for its duty of every 10 ms on core 0. A quota: the",
             "server in a cgroup with a CFS quota per 100 ms period, as `limits.cpu` sets a pod's.", "",
             "| condition | server | answered/s | p50 ms | p99 ms | refused | refused share | periods throttled | client CPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rows in contention.values():
        for name in ("baseline", "shipyard"):
            m, t = rows[name]["32_clients"], rows[name]["throttled"]
            lines.append(f"| {rows['label']} | {name} | {m['answered_rps']} | {m['p50_ms']} | {m['p99_ms']} | {m['rejected']} | "
                         f"{m['refused_share']} | {t['share'] if t else '-'} | {m['client_cpu']} |")
    lines += ["", "shipyard's overload at 3 x each condition's saturation:", "",
              "| condition | offered/s | answered/s | answered p99 ms | 503 | 503 p99 ms | other status | unanswered | "
              "recovery s | generator CPU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for rows in contention.values():
        o = rows["shipyard"]["overload"]
        m = o["overload"]
        lines.append(f"| {rows['label']} | {m['offered_rps']:.0f} | {m['answered_rps']} | {m['answered_p99_ms']} | "
                     f"{m['refused']} | {m['refused_p99_ms']} | {m['other_status']} | {m['unanswered']} | "
                     f"{o['recovery_s']} | {o['client_cpu']} |")
    return lines
