"""Near-real-time mode: a worker that scores transactions from a Redis stream.

Messages carry one transaction as JSON in their `data` field. Workers share a consumer group, read
micro-batches, validate them with the service's schema (service.frames, as batch does), score the
valid ones with the same pipeline and write, for each input message, exactly one entry: a score
on the output stream or a reason on the dead-letter stream, both naming the input id.

Delivery is at least once and outputs are idempotent: one Lua script per batch writes the entries,
records each input id in a hash (HSETNX: a redelivered id writes nothing again) and acknowledges,
atomically. A worker killed mid-batch has acknowledged nothing of it; its messages stay pending
and the next worker (or itself, restarted) claims them after `claim_idle_ms` and finishes them.

usage: python -m service.stream --help
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from service.batch import Chunk, scores, validate_chunk
from service.frames import Rejection
from service.schemas import Score

logger = logging.getLogger("shipyard.stream")

_COMMIT = """
local written = 0
local n = tonumber(ARGV[2])
for k = 0, n - 1 do
  local id, kind, payload = ARGV[3 + 3 * k], ARGV[4 + 3 * k], ARGV[5 + 3 * k]
  if redis.call('HSETNX', KEYS[3], id, kind) == 1 then
    if kind == 'score' then
      redis.call('XADD', KEYS[1], '*', 'input_id', id, 'score', payload)
    else
      redis.call('XADD', KEYS[2], '*', 'input_id', id, 'reason', payload)
    end
    written = written + 1
  end
  redis.call('XACK', KEYS[4], ARGV[1], id)
end
return written
"""


class StreamSettings(BaseModel):
    """Where the worker reads and writes; every name has a default, so one flag (--redis) is enough."""

    redis_url: str = Field(default="redis://127.0.0.1:6390/0", pattern=r"^rediss?://")
    input_stream: str = Field(default="transactions", min_length=1)
    group: str = Field(default="fraud-scorer", min_length=1)
    consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1)
    output_stream: str = Field(default="scores", min_length=1)
    dead_letter_stream: str = Field(default="transactions-dead", min_length=1)
    batch_size: int = Field(default=256, ge=1, le=10_000)
    block_ms: int = Field(default=1000, ge=1, le=60_000)
    claim_idle_ms: int = Field(default=5000, ge=100, description="pending this long: another worker's to take")

    @property
    def seen_key(self) -> str:
        return f"{self.output_stream}:written"


@dataclass
class BatchOutcome:
    read: int
    scored: int
    dead_lettered: int
    written: int


_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    """Prometheus metrics, registered once per process (a registry refuses a second registration)."""
    from prometheus_client import Counter, Gauge, Histogram

    if _METRICS:
        return _METRICS
    _METRICS.update({
        "messages": Counter("shipyard_stream_messages_total", "Input messages finished, by outcome", ["outcome"]),
        "duplicates": Counter("shipyard_stream_duplicates_total", "Redelivered messages whose output already existed"),
        "lag": Gauge("shipyard_stream_lag_messages", "Messages in the input stream not yet delivered to the group"),
        "pending": Gauge("shipyard_stream_pending_messages", "Messages delivered but not yet acknowledged"),
        "batch_seconds": Histogram("shipyard_stream_batch_seconds", "Time to validate, score and commit a batch"),
        "connected": Gauge("shipyard_stream_broker_connected", "1 while the worker reaches its broker, else 0"),
    })
    return _METRICS


def serve_probes(worker: "Worker", port: int, host: str) -> None:
    """/metrics (Prometheus) and /readyz on one port, in a daemon thread.

    Why a readiness of its own: a worker that cannot reach its broker keeps running (it retries,
    losing nothing), so "the process answers" is not "the worker works". /readyz answers 503 until
    the consumer group is reached and again whenever the broker is lost, so Kubernetes, and
    `shipyard status`, see a worker cut off from its broker as not ready."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Probes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] == "/readyz":
                status, body, kind = (200, b"ready\n", "text/plain") if worker.connected else \
                    (503, b"not connected to the broker\n", "text/plain")
            elif self.path.split("?")[0] == "/metrics":
                status, body, kind = 200, generate_latest(), CONTENT_TYPE_LATEST
            else:
                status, body, kind = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Probes)
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()


class Worker:
    def __init__(self, settings: StreamSettings, pipeline: Any, threshold: float, model_version: str,
                 client: Any = None) -> None:
        import redis

        self.settings = settings
        self.pipeline = pipeline
        self.threshold = threshold
        self.model_version = model_version
        self.redis = client or redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self._commit = self.redis.register_script(_COMMIT)
        self.metrics = _metrics()
        self.stopping = False
        self.connected = False  # reached the broker and its consumer group (readiness)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics["connected"].set(1 if connected else 0)

    def ensure_group(self) -> None:
        import redis

        try:
            self.redis.xgroup_create(self.settings.input_stream, self.settings.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim(self) -> list[tuple[str, dict[str, str]]]:
        """Messages another (dead) worker left pending for longer than claim_idle_ms."""
        s = self.settings
        _, claimed, _ = self.redis.xautoclaim(s.input_stream, s.group, s.consumer, s.claim_idle_ms, "0-0",
                                              count=s.batch_size)
        return [(mid, fields) for mid, fields in claimed if fields is not None]

    def _read(self) -> list[tuple[str, dict[str, str]]]:
        s = self.settings
        # Our own pending messages first (a restart under the same name), then new ones.
        for start in ("0", ">"):
            answer = self.redis.xreadgroup(s.group, s.consumer, {s.input_stream: start}, count=s.batch_size,
                                           block=None if start == "0" else s.block_ms)
            messages = [(mid, fields) for _, entries in (answer or []) for mid, fields in entries if fields]
            if messages:
                return messages
        return []

    def process(self, messages: list[tuple[str, dict[str, str]]]) -> BatchOutcome:
        started = time.perf_counter()
        ids: list[str] = []
        records: list[dict[str, Any]] = []
        results: dict[str, tuple[str, str]] = {}
        for mid, fields in messages:
            try:
                value = json.loads(fields.get("data", ""))
            except ValueError as exc:
                results[mid] = ("dead", json.dumps({"field": "data", "rule": "json_invalid", "message": str(exc)[:200]}))
                continue
            if not isinstance(value, dict):
                results[mid] = ("dead", json.dumps({"field": "data", "rule": "json_invalid",
                                                    "message": "not a JSON object"}))
                continue
            ids.append(mid)
            records.append(value)
        if records:
            positions = np.arange(len(records))
            checked = validate_chunk(Chunk(positions, pd.DataFrame.from_records(records), records))
            for pos, rejection in checked.rejects:
                results[ids[pos]] = ("dead", json.dumps(_reason(rejection)))
            for pos, tx_id, p in zip(checked.rows, checked.ids, scores(self.pipeline, checked.features)):
                score = Score(transaction_id=None if pd.isna(tx_id) else str(tx_id), probability=float(p), threshold=self.threshold,
                              decision="fraud" if p >= self.threshold else "legitimate",
                              model_version=self.model_version)
                results[ids[int(pos)]] = ("score", score.model_dump_json())
        if len(results) != len(messages):
            raise RuntimeError(f"{len(messages)} messages but {len(results)} outcomes: refusing to acknowledge")
        args: list[Any] = [self.settings.group, len(messages)]
        for mid, _ in messages:
            args += [mid, *results[mid]]
        s = self.settings
        written = int(self._commit(keys=[s.output_stream, s.dead_letter_stream, s.seen_key, s.input_stream], args=args))
        dead = sum(1 for kind, _ in results.values() if kind == "dead")
        self.metrics["messages"].labels(outcome="scored").inc(len(messages) - dead)
        self.metrics["messages"].labels(outcome="dead_letter").inc(dead)
        self.metrics["duplicates"].inc(len(messages) - written)
        self.metrics["batch_seconds"].observe(time.perf_counter() - started)
        return BatchOutcome(len(messages), len(messages) - dead, dead, written)

    def lag(self) -> tuple[int, int]:
        """(undelivered, pending) messages of the group: what a dashboard and an autoscaler watch."""
        for group in self.redis.xinfo_groups(self.settings.input_stream):
            if group["name"] == self.settings.group:
                return int(group.get("lag") or 0), int(group.get("pending") or 0)
        return 0, 0

    def run(self, max_idle_s: float | None = None) -> int:
        """Consumes until stopped (SIGTERM/SIGINT) or, with max_idle_s, until nothing came for that long.
        Returns the number of messages finished."""
        import redis

        done, idle_since = 0, time.monotonic()
        while not self.stopping:
            try:
                if not self.connected:
                    self.ensure_group()
                    self._set_connected(True)
                messages = self._claim() or self._read()
                lag, pending = self.lag()
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # broker restarting or unreachable:
                logger.warning("redis unreachable (%s); retrying in 1 s", exc)  # wait for it, lose nothing
                self._set_connected(False)
                time.sleep(1)
                continue
            self.metrics["lag"].set(lag)
            self.metrics["pending"].set(pending)
            if not messages:
                if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
                continue
            outcome = self.process(messages)
            done += outcome.read
            idle_since = time.monotonic()
            logger.info("batch of %d: %d scored, %d dead-lettered, %d new outputs; lag %d",
                        outcome.read, outcome.scored, outcome.dead_lettered, outcome.written, lag)
        return done


def _reason(rejection: Rejection) -> dict[str, str]:
    return {"field": rejection.field, "rule": rejection.rule, "message": rejection.message}


def main(argv: list[str] | None = None) -> int:
    defaults = StreamSettings.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m service.stream",
        description="Score transactions from a Redis stream (consumer group, micro-batches, at-least-once "
                    "delivery with idempotent outputs, dead letters with reasons). Runs until SIGTERM.")
    parser.add_argument("--redis", default=os.environ.get("SHIPYARD_REDIS_URL", defaults["redis_url"].default),
                        help="redis URL (env SHIPYARD_REDIS_URL; default %(default)s)")
    parser.add_argument("--model", default=os.environ.get("SHIPYARD_MODEL", "fraud_detector:latest"),
                        help="model tag in the BentoML store (env SHIPYARD_MODEL; default %(default)s)")
    for name in ("input_stream", "group", "output_stream", "dead_letter_stream"):
        parser.add_argument(f"--{name.replace('_', '-')}", default=defaults[name].default, help=f"default %(default)s")
    parser.add_argument("--consumer", help="consumer name in the group (default: host name and PID)")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"].default, help="default %(default)s")
    parser.add_argument("--claim-idle-ms", type=int, default=defaults["claim_idle_ms"].default,
                        help="take over messages pending this long in a dead worker (default %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("SHIPYARD_METRICS_PORT", "9100")),
                        help="port of /metrics (Prometheus) and /readyz (503 while the broker is unreachable); "
                             "0 for none (default %(default)s)")
    parser.add_argument("--metrics-host", default=os.environ.get("SHIPYARD_METRICS_HOST", "127.0.0.1"),
                        help="address the metrics listen on (default %(default)s; 0.0.0.0 in a pod)")
    parser.add_argument("--max-idle-s", type=float, help="exit after this long without messages (default: never)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from pydantic import ValidationError

    try:
        settings = StreamSettings(redis_url=args.redis, input_stream=args.input_stream, group=args.group,
                                  output_stream=args.output_stream, dead_letter_stream=args.dead_letter_stream,
                                  batch_size=args.batch_size, claim_idle_ms=args.claim_idle_ms,
                                  **({"consumer": args.consumer} if args.consumer else {}))
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: --{str(error['loc'][0]).replace('_', '-')}: {error['msg']}", file=sys.stderr)
        return 2
    from service.model import load_from_store

    try:
        model = load_from_store(args.model)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker = Worker(settings, model.pipeline, model.threshold, model.tag)
    if args.metrics_port:
        serve_probes(worker, args.metrics_port, args.metrics_host)

    def stop(signum: int, frame: object) -> None:
        worker.stopping = True  # finish the batch in hand, then exit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("worker %s: %s -> %s (dead letters: %s), model %s", settings.consumer, settings.input_stream,
                settings.output_stream, settings.dead_letter_stream, model.tag)
    done = worker.run(args.max_idle_s)
    logger.info("stopped after %d messages", done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
