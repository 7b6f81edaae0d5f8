"""Stream worker throughput and lag against the real Redis (scripts/redis/up), with a baseline
measured in the same run: bare predict_proba on the same rows in micro-batches of the same size.

Publishes N transactions to a fresh stream, then one worker drains it; prints messages/s, the
ratio to the baseline, and the worst lag (undelivered messages) and end-to-end age seen.

usage: python -m bench.stream [--messages N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid


def run(messages: int, batch_size: int) -> dict:
    import redis
    import sklearn

    from service.model import generate_transactions, train
    from service.schemas import FEATURES
    from service.stream import StreamSettings, Worker

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    model = train(generate_transactions(200_000, seed=7), seed=7)
    data = generate_transactions(messages, seed=31).drop(columns=["is_fraud"])
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = StreamSettings(input_stream=f"{prefix}:in", output_stream=f"{prefix}:out",
                              dead_letter_stream=f"{prefix}:dead", consumer="bench", batch_size=batch_size,
                              block_ms=100)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        pipe = client.pipeline()
        for rec in data.to_dict("records"):
            pipe.xadd(settings.input_stream, {"data": json.dumps(rec)})
        pipe.execute()
        frame = data[list(FEATURES)]
        started = time.perf_counter()
        for i in range(0, messages, batch_size):
            model.pipeline.predict_proba(frame.iloc[i:i + batch_size])
        raw_s = time.perf_counter() - started
        worker = Worker(settings, model.pipeline, model.threshold, "bench")
        worker.ensure_group()
        lag_seen = 0
        started = time.perf_counter()
        done = 0
        while done < messages:
            batch = worker._read()
            lag_seen = max(lag_seen, worker.lag()[0])
            done += worker.process(batch).read
        worker_s = time.perf_counter() - started
        assert client.xlen(settings.output_stream) == messages
    finally:
        client.delete(settings.input_stream, settings.output_stream, settings.dead_letter_stream, settings.seen_key)
    return {"messages": messages, "batch_size": batch_size, "worker_messages_per_s": messages / worker_s,
            "raw_predict_proba_rows_per_s_same_batches": messages / raw_s, "ratio": raw_s / worker_s,
            "max_lag_messages": lag_seen, "drain_s": worker_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    print(json.dumps(run(args.messages, args.batch_size), indent=2))


if __name__ == "__main__":
    main()
