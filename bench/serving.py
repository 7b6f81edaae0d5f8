"""Model and service latency, and whether adaptive batching pays for single-row traffic.

Prints, from one run on this machine:
- in-process predict_proba time for 1 and 64 rows (the limit);
- single-client latency through the served Bento's /score (median of a few hundred requests);
- 32 concurrent clients each sending 1-row lists to the same scoring code with and without
  BentoML adaptive batching (ratio batched / unbatched; >1 means batching helps).

usage: python -m bench.serving   (needs a trained model: shipyard train)
"""

from __future__ import annotations

import json
import statistics
import time

from shipyard.paths import configure_environment

configure_environment()

from bench.common import TRANSACTION, concurrent_load, sequential_latency_ms, served  # noqa: E402


def predict_proba_ms(rows: int, repeats: int = 500) -> float:
    import bentoml
    import sklearn

    from service.model import MODEL_NAME, features_frame, generate_transactions, load_pipeline
    from service.schemas import FEATURES

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    pipeline = load_pipeline(bentoml.models.get(f"{MODEL_NAME}:latest").path)
    records = generate_transactions(rows, seed=99)[list(FEATURES)].to_dict("records")
    for _ in range(50):
        pipeline.predict_proba(features_frame(records))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pipeline.predict_proba(features_frame(records))
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    result = {"predict_proba_1_row_ms": predict_proba_ms(1), "predict_proba_64_rows_ms": predict_proba_ms(64)}
    with served("fraud_scorer:latest") as url:
        result["served_single_client"] = sequential_latency_ms(url, TRANSACTION, 300)
    with served("bench.batched_service:BatchingBench") as url:
        body = [TRANSACTION]
        result["unbatched_32_clients"] = concurrent_load(url, "/unbatched", body, 32, 3000)
        result["batched_32_clients"] = concurrent_load(url, "/batched", body, 32, 3000)
    result["batching_rps_ratio"] = result["batched_32_clients"]["rps"] / result["unbatched_32_clients"]["rps"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
