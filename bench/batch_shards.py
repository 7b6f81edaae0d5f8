"""Sharded batch on the local cluster against the local `shipyard batch`, on the same file in the
same run: rows/s with 1, 2 and 4 shards, and where a cluster run's time goes (the CLI's start, the
files pod and the split; the copy to the volume; the Job; copy back, merge and clean-up).

Both sides run the same entry point (service.batch) with the same model and validation; the
cluster side adds the orchestration. Needs staging deployed on the local cluster
(`make cluster-demo`, or `shipyard deploy staging --target kubernetes`) and KUBECONFIG set.

usage: python -m bench.batch_shards [--rows N] [--shards 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BREAKS = [("hour", "25"), ("currency", "XXX"), ("amount", "nan"), ("country", ""), ("card_present", "maybe")]


def make_input(rows: int, path: Path) -> int:
    """`rows` transactions as CSV, 1 % broken in several ways; returns how many are broken."""
    import numpy as np

    from service.model import generate_transactions

    frame = generate_transactions(rows, seed=11).astype(object)
    broken = np.sort(np.random.default_rng(5).choice(rows, size=rows // 100, replace=False))
    for n, row in enumerate(broken):
        column, value = BREAKS[n % len(BREAKS)]
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return len(broken)


def timed_run(args: list[str]) -> tuple[float, dict[str, float], str]:
    """Runs the CLI; returns its wall time, when each phase began (seconds from the start) and stdout."""
    started = time.perf_counter()
    marks: dict[str, float] = {}
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        for phase, prefix in (("copy_in", "copying them"), ("job", "job/"), ("merge", "every shard succeeded")):
            if prefix in line and phase not in marks:
                marks[phase] = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.wait() != 0:
        raise SystemExit(f"shipyard {' '.join(args)} failed")
    return time.perf_counter() - started, marks, stdout


def staging_model() -> str:
    """The model staging runs, which the local run must use too (else the ratio compares models)."""
    status = subprocess.run([sys.executable, "-m", "shipyard.cli", "status", "staging", "--target", "kubernetes",
                             "-o", "json"], capture_output=True, text=True)
    model = json.loads(status.stdout)[0]["model"] if status.returncode == 0 else None
    if not model:
        raise SystemExit(f"staging is not running on the cluster: {status.stderr.strip()}")
    return model


def run(rows: int, shard_counts: list[int]) -> dict:
    model = staging_model()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-shards-") as tmp:
        source = Path(tmp) / "transactions.csv"
        broken = make_input(rows, source)
        try:
            local_s, _, _ = timed_run(["batch", str(source), str(Path(tmp) / "local.csv"), "--model", model])
        except SystemExit:
            raise SystemExit(f"staging runs {model}, which this checkout's model store lacks: deploy this "
                             "checkout's image (shipyard image build; shipyard deploy staging --target kubernetes)")
        results = {"model": model, "rows": rows, "broken_rows": broken, "input_mb": round(source.stat().st_size / 1e6, 1),
                   "local": {"seconds": round(local_s, 2), "rows_per_s": round(rows / local_s)}, "cluster": []}
        for shards in shard_counts:
            out = Path(tmp) / f"k8s-{shards}.csv"
            seconds, marks, _ = timed_run(["batch", str(source), str(out), "--target", "kubernetes", "--env", "staging",
                                           "--shards", str(shards)])
            same = out.read_bytes() == (Path(tmp) / "local.csv").read_bytes()
            results["cluster"].append({
                "shards": shards, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
                "vs_local": round(local_s / seconds, 2), "output_equals_local": same,
                "start_and_split_s": round(marks.get("copy_in", 0), 2),
                "copy_in_s": round(marks.get("job", 0) - marks.get("copy_in", 0), 2),
                "job_s": round(marks.get("merge", 0) - marks.get("job", 0), 2),
                "copy_out_and_merge_s": round(seconds - marks.get("merge", seconds), 2)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.shards), indent=2))


if __name__ == "__main__":
    main()
