"""`shipyard batch --target kubernetes` on the local cluster: an Indexed Job on a real volume, its
output equal to the local run's row for row, a killed shard retried, a deleted Job resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_cli
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster
K8S = {"KUBECONFIG": str(KUBECONFIG)}
NAMESPACE = "fraud-staging"
ROWS = 200_000
# 1 % invalid rows, of several kinds: each (column, value) is the break and the rule it must name.
BREAKS = [("hour", "25", "less_than_equal"), ("currency", "XXX", "literal_error"), ("amount", "nan", "finite_number"),
          ("country", "", "missing"), ("card_present", "maybe", "bool_type")]


@pytest.fixture(scope="module")
def staging(cluster_up, built_image, built_bento, cli_env) -> str:
    """Staging on the cluster, and the model it runs (the local runs compare with that model)."""
    result = run_cli("deploy", "staging", "--target", "kubernetes", "--image", built_image.reference, env=K8S,
                     timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(run_cli("image", "list", "-o", "json", env=cli_env).stdout)
    return next(r["model"] for r in listed if r["bento"] == built_bento)


@pytest.fixture(scope="module")
def transactions(tmp_path_factory):
    """ROWS transactions as CSV, 1 % of them broken (BREAKS in turn), and the rows broken."""
    from service.model import generate_transactions

    frame = generate_transactions(ROWS, seed=11).astype(object)
    broken = np.random.default_rng(5).choice(ROWS, size=ROWS // 100, replace=False)
    for n, row in enumerate(sorted(broken)):
        column, value, _ = BREAKS[n % len(BREAKS)]
        frame.loc[row, column] = value
    path = tmp_path_factory.mktemp("batch") / "transactions.csv"
    frame.to_csv(path, index=False)
    return path, {int(r) + 1 for r in broken}


@pytest.fixture(scope="module")
def local_run(transactions, staging, tmp_path_factory, cli_env):
    source, _ = transactions
    out = tmp_path_factory.mktemp("local") / "scores.csv"
    result = run_cli("batch", str(source), str(out), "--model", staging, env=cli_env, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


def batch_args(source, out, *extra):
    return ["batch", str(source), str(out), "--target", "kubernetes", "--env", "staging", *extra]


def test_four_shards_score_every_row_exactly_as_the_local_run(transactions, local_run, tmp_path):
    source, broken = transactions
    out = tmp_path / "scores.csv"
    result = run_cli(*batch_args(source, out, "--shards", "4"), env=K8S, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{ROWS} rows in = {ROWS - len(broken)} scored" in result.stdout and "(4 shards)" in result.stdout
    assert "50000, 50000, 50000, 50000" in result.stderr and "shards 0/4 done" in result.stderr
    assert out.read_bytes() == local_run.read_bytes()
    rejects = out.with_name("scores.rejects.csv")
    assert rejects.read_bytes() == local_run.with_name("scores.rejects.csv").read_bytes()
    lines = [line.split(",") for line in rejects.read_text().splitlines()[1:]]
    assert {int(row) for row, *_ in lines} == broken
    assert {rule for _, _, rule, *_ in lines} == {rule for _, _, rule in BREAKS}
    assert not list(tmp_path.glob("*.partial"))
    files_pods = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=batch-files",
                                    "-o", "json").stdout)["items"]
    assert all("deletionTimestamp" in p["metadata"] for p in files_pods)  # going, not left behind


def start_batch(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shipyard.cli", *args], cwd=PROJECT_ROOT, text=True,
                            env={**__import__("os").environ, **K8S}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(what: str, check, limit_s: float = 300):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def unfinished_shard_pods() -> list[str]:
    """Shard pods not yet done: a pod deleted now must fail (the shard script forwards the SIGTERM
    even while Python is starting) and be retried."""
    pods = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=batch",
                              "-o", "json").stdout)["items"]
    return [p["metadata"]["name"] for p in pods if p["status"].get("phase") in ("Pending", "Running")
            and "deletionTimestamp" not in p["metadata"] and "job-name" in str(p["metadata"].get("labels"))]


def test_a_killed_shard_is_retried_and_the_result_is_still_exact(transactions, local_run, tmp_path):
    source, _ = transactions
    out = tmp_path / "scores.csv"
    run = start_batch(*batch_args(source, out, "--shards", "4"))
    try:
        victim = wait_for("a shard's pod", unfinished_shard_pods)[0]
        kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=false")
        stdout, stderr = run.communicate(timeout=900)
    finally:
        run.kill()
    assert run.returncode == 0, stdout + stderr
    assert "failed pod(s) retried" in stdout and "failed and retried" in stderr
    assert out.read_bytes() == local_run.read_bytes()
    assert out.with_name("scores.rejects.csv").read_bytes() == local_run.with_name("scores.rejects.csv").read_bytes()


def test_a_deleted_job_is_resumed_running_only_its_unfinished_shards(transactions, local_run, tmp_path):
    source, _ = transactions
    out = tmp_path / "scores.csv"
    run = start_batch(*batch_args(source, out, "--shards", "8"))  # two waves of 4: some finish, some not

    def job_part_done():
        jobs = json.loads(kubectl("-n", NAMESPACE, "get", "jobs", "-l", "shipyard.dev/batch-run", "-o", "json").stdout)
        for job in jobs["items"]:
            done = job["status"].get("completedIndexes", "")
            if done and job["status"].get("active"):
                return job["metadata"]["name"]
        return None

    try:
        job = wait_for("a Job with some shards done and some running", job_part_done)
        kubectl("-n", NAMESPACE, "delete", "job", job, "--cascade=foreground", "--wait=true")
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 1 and f"job/{job} was deleted before it finished" in stderr and "--resume" in stderr
    assert not out.exists()
    resumed = run_cli(*batch_args(source, out, "--shards", "8", "--resume"), env=K8S, timeout=900)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    complete = json.loads(resumed.stderr.split("shards ", 1)[1].split(" complete", 1)[0])
    assert 1 <= len(complete) < 8, resumed.stderr
    assert f"{8 - len(complete)} of 8 to run" in resumed.stderr
    assert out.read_bytes() == local_run.read_bytes()
    again = run_cli(*batch_args(source, out, "--shards", "8", "--resume"), env=K8S, timeout=300)
    assert again.returncode == 1 and "nothing to resume" in again.stderr


def test_bad_batch_requests_are_refused_with_the_fix(staging, tmp_path):
    (tmp_path / "in.xlsx").write_text("x")
    wrong = run_cli(*batch_args(tmp_path / "in.xlsx", tmp_path / "o.csv"), env=K8S)
    assert wrong.returncode == 1 and "use .csv, .jsonl, .ndjson, .parquet" in wrong.stderr
    local = run_cli("batch", "in.csv", "o.csv", "--shards", "2")
    assert local.returncode == 2 and "--shards and --resume are for --target kubernetes" in local.stderr
    (tmp_path / "in.csv").write_text("a\n1\n")
    shards = run_cli(*batch_args(tmp_path / "in.csv", tmp_path / "o.csv", "--shards", "0"), env=K8S)
    assert shards.returncode == 2 and "--shards" in shards.stderr
