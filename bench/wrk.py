"""Closed-loop loads with wrk (Debian's package, written in C): N connections, each sends its next
request when its answer arrives, cycling through real request bodies.

Why wrk for the closed loops: it is the field's C generator, and a Python closed loop (the aiohttp
one these benchmarks first had) spent a whole core producing ~6 000 requests/s, so every server at
or above that rate measured the generator. wrk runs pinned to the second core (the server to the first), and
its own CPU share is reported with each result: under 0.9 of its core, it was not the bottleneck.
Bounded in time (`-d`) and only ever aimed at 127.0.0.1.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CLIENT_BOUND_CPU = 0.9  # the generator used 90 % of its core or more: the result may be the client's limit

SERVER_CORE, CLIENT_CORE = 0, 1

# Each thread reads the bodies once and pre-formats one request per body; done() prints one JSON line.
SCRIPT = r"""
local requests, n = {}, 0
function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    requests[n] = wrk.format("POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
end
local i = 0
function request()
  i = i % n + 1
  return requests[i]
end
function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def pin(pid: int, core: int = SERVER_CORE) -> None:
    """Pins a server's process and every process it forked (BentoML's arbiter and worker) to one core."""
    import psutil

    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        proc.cpu_affinity([core])


def closed_loop(url: str, path: str, bodies: list[bytes], connections: int, seconds: float,
                rows_per_request: int = 1) -> dict[str, Any]:
    """wrk against url+path for `seconds`: answers, latency percentiles, wrk's errors and its CPU."""
    if not available():
        raise RuntimeError("wrk is not installed: apt-get install wrk (Debian's package)")
    with tempfile.TemporaryDirectory(prefix="shipyard-wrk-") as tmp:
        script, data = Path(tmp) / "bodies.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(SCRIPT)
        data.write_bytes(b"\n".join(bodies) + b"\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
             "--timeout", "10s", "-s", str(script), url, "--", str(data), path],
            capture_output=True, text=True, timeout=seconds + 60)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr.strip() or result.stdout.strip()}")
    raw = json.loads(result.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    answered = raw["requests"] - raw["non_2xx"]
    return {
        "generator": "wrk",
        "requests": raw["requests"],
        "answered_rps": round(answered / seconds_run, 1),
        "rows_per_s": round(answered * rows_per_request / seconds_run, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "rejected": raw["non_2xx"],  # non-2xx answers: none are expected in these closed loops
        "errors": errors,
        "client_cpu": round(cpu, 2),
        "client_bound": cpu >= CLIENT_BOUND_CPU,
    }


if __name__ == "__main__":  # a quick look: python -m bench.wrk URL PATH BODIES.jsonl [connections] [seconds]
    import sys

    url, path, bodies_file = sys.argv[1:4]
    lines = Path(bodies_file).read_bytes().splitlines()
    print(json.dumps(closed_loop(url, path, lines, int(sys.argv[4]) if len(sys.argv) > 4 else 32,
                                 float(sys.argv[5]) if len(sys.argv) > 5 else 5), indent=2))
