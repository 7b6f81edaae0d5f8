"""The script each shard's pod runs, run here by a real /bin/sh: the shard protocol's arguments,
and a complete shard skipped (what makes --resume re-run only the unfinished shards)."""

from __future__ import annotations

import os
import subprocess
import sys

from shipyard.targets.batch import SHARD_SCRIPT, _indexes

# Stands in for the project's entry point: prints the arguments it was given.
ECHO_ARGS = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def run_shard(run_dir, index: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, JOB_COMPLETION_INDEX=str(index), SHIPYARD_BATCH_RUN=str(run_dir),
               SHIPYARD_BATCH_IN=".csv", SHIPYARD_BATCH_OUT=".parquet")
    return subprocess.run(["/bin/sh", "-c", SHARD_SCRIPT, "shard", *ECHO_ARGS], env=env, capture_output=True,
                          text=True, timeout=60)


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
