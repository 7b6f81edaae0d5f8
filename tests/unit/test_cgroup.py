"""The server's CPU quota read from cgroup files as the kernel lays them out (v1 and v2)."""

from __future__ import annotations

from pathlib import Path

from shipyard_serving.cgroup import quota_cpus


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_takes_the_tightest_limit_of_the_group_and_its_ancestors(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "kubepods" / "pod1" / "cpu.max", "50000 100000\n")  # the pod: 500m
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")  # its container: none
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    assert quota_cpus(proc, root) == 0.5


def test_v1_reads_the_cpu_hierarchy_and_no_quota_is_none(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu" / "bench" / "cpu.cfs_quota_us", "100000\n")
    _write(root / "cpu" / "bench" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/x\n1:cpu:/bench\n0::/\n")
    assert quota_cpus(proc, root) == 1.0
    proc.write_text("1:cpu:/\n")
    assert quota_cpus(proc, root) is None
    assert quota_cpus(tmp_path / "missing", root) is None
