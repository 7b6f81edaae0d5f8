"""Batch mode against the model itself: rows/s through `score_file` (read, validate, score, write)
over rows/s of bare `predict_proba` on the same rows, in the same run.

Target (issue 8): ratio >= 0.7 on 1 million rows, i.e. validation and I/O cost under 30 %.
The model is trained here (seeded), so the benchmark needs nothing but the project.

usage: python -m bench.batch [--rows N] [--format parquet|csv]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def run(rows: int, fmt: str) -> dict:
    import sklearn

    from service.batch import score_file
    from service.model import generate_transactions, train
    from service.schemas import FEATURES

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    model = train(generate_transactions(200_000, seed=7), seed=7)
    data = generate_transactions(rows, seed=21)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        source = Path(tmp) / f"in.{fmt}"
        data.to_parquet(source) if fmt == "parquet" else data.to_csv(source, index=False)
        frame = data[list(FEATURES)]
        started = time.perf_counter()
        model.pipeline.predict_proba(frame)
        raw_s = time.perf_counter() - started
        started = time.perf_counter()
        result = score_file(source, Path(tmp) / f"out.{fmt}", Path(tmp) / "rejects.csv", model.pipeline,
                            model.threshold, "bench")
        batch_s = time.perf_counter() - started
    assert result.scored == rows, result
    return {"rows": rows, "format": fmt, "raw_predict_proba_rows_per_s": rows / raw_s,
            "batch_rows_per_s": rows / batch_s, "ratio": raw_s / batch_s, "target_ratio": 0.7}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.format), indent=2))


if __name__ == "__main__":
    main()
