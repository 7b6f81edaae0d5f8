"""The script each shard's pod runs, run here by a real /bin/sh: the shard protocol's arguments,
a complete shard skipped (what makes --resume re-run only the unfinished shards), the entry point's
exit code, and a pod's SIGTERM reaching the entry point when the shell is PID 1, as in a pod."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shipyard.targets.batch import SHARD_SCRIPT, _indexes

# Stands in for the project's entry point: prints the arguments it was given.
ECHO_ARGS = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def shard_env(run_dir, index: int) -> dict:
    return dict(os.environ, JOB_COMPLETION_INDEX=str(index), SHIPYARD_BATCH_RUN=str(run_dir),
                SHIPYARD_BATCH_IN=".csv", SHIPYARD_BATCH_OUT=".parquet")


def run_shard(run_dir, index: int, entry_point: list[str] = ECHO_ARGS) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", SHARD_SCRIPT, "shard", *entry_point], env=shard_env(run_dir, index),
                          capture_output=True, text=True, timeout=60)


def shard_folder(tmp_path, index: int) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / f"{index}.first-row").write_text("1")


def test_a_shard_runs_the_entry_point_with_the_shard_protocol(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "2.first-row").write_text("2501")
    result = run_shard(tmp_path, 2)
    assert result.returncode == 0, result.stderr
    d = str(tmp_path)
    assert result.stdout.strip() == (f'["{d}/in/2.csv", "{d}/out/2.parquet", "--rejects", "{d}/out/2.rejects.csv", '
                                     f'"--first-row", "2501", "--summary", "{d}/out/2.json"]')


def test_a_shard_with_a_summary_is_complete_and_skipped(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "0.json").write_text("{}")
    result = run_shard(tmp_path, 0)
    assert result.returncode == 0 and result.stdout == "" and "shard 0 is complete: skipped" in result.stderr


def test_the_jobs_index_ranges_are_read_as_sets():
    assert _indexes("0,2-4,7") == {0, 2, 3, 4, 7}
    assert _indexes(None) == set() and _indexes("") == set()


def test_the_entry_points_exit_code_is_the_shards(tmp_path):
    shard_folder(tmp_path, 0)
    assert run_shard(tmp_path, 0, [sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3


def test_a_pods_sigterm_reaches_an_entry_point_that_has_no_handler_yet(tmp_path):
    """The shell runs as PID 1 of a PID namespace of its own, as in a pod, and the entry point is
    still "importing" (no SIGTERM handler). The kernel drops an unhandled signal sent to PID 1 from
    outside, so a shell that exec'd the entry point would let it run to the end and exit 0."""
    shard_folder(tmp_path, 0)
    started = tmp_path / "in" / "started"
    slow = [sys.executable, "-c", "import pathlib, sys, time; "
            "pathlib.Path(sys.argv[1]).with_name('started').touch(); time.sleep(30)"]
    run = subprocess.Popen(["unshare", "--pid", "--fork", "/bin/sh", "-c", SHARD_SCRIPT, "shard", *slow],
                           env=shard_env(tmp_path, 0), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), run.stderr.read() if run.poll() is not None else "the entry point never started"
        children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
        assert len(children) == 1  # unshare's one child: the shell, PID 1 in its namespace
        os.kill(int(children[0]), signal.SIGTERM)
        run.wait(timeout=20)  # generous: catches a signal that never arrived (the sleep is 30 s)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM, run.stderr.read()
