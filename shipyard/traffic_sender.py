"""Steady traffic to a service, for as long as a plan says: what a canary is judged under.

Runs where the traffic must come from: inside the environment's namespace as a pod (`shipyard
traffic ENV --target kubernetes` ships this file in a ConfigMap and runs it with the image the
environment serves), or on the host against a local server. It imports only the standard
library, so any image with a Python interpreter runs it.

Open loop at a fixed rate: request i is due at start + i / rps whatever the answers do, spread
over a few threads, each request on a new connection, so kube-proxy balances requests (not a few
long-lived connections) over the Service's endpoints, as it does for clients that do not pool.
Bounded by count and time, and ended early by SIGTERM (a promotion that drives its own traffic
stops it when the canary ends: the pod's termination), which lets requests in flight finish.
Prints one progress line every 10 s and, last, a JSON summary: requests sent, answers by status,
transport failures with their first messages, p99, and whether it was stopped early.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter

THREADS = 8
TIMEOUT_S = 10.0


def main(plan_path: str) -> int:
    plan = json.loads(open(plan_path).read())
    url = urllib.parse.urlsplit(plan["url"])
    rps, duration = float(plan["rps"]), float(plan["duration_s"])
    routes = [(route, spec["bodies"]) for route, spec in plan["routes"].items() for _ in range(int(spec["weight"]))]
    total = int(rps * duration)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    failed = 0
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def send(worker: int) -> None:
        nonlocal failed
        for i in range(worker, total, THREADS):
            due = start + i / rps
            pause = due - time.monotonic()
            if stop.wait(max(pause, 0.0)):
                return
            route, bodies = routes[i % len(routes)]
            wire = bodies[(i // len(routes)) % len(bodies)]
            body = base64.b64decode(wire["base64"])
            sent = time.monotonic()
            try:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=TIMEOUT_S)
                conn.request("POST", route, body, {"Content-Type": wire["content_type"], "Connection": "close"})
                answer = conn.getresponse()
                answer.read()
                conn.close()
                with lock:
                    statuses[answer.status] += 1
                    latencies.append(time.monotonic() - sent)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failed += 1
                    if len(failures) < 10:
                        failures.append(f"{route}: {exc.__class__.__name__}: {exc}")

    workers = [threading.Thread(target=send, args=(w,), daemon=True) for w in range(THREADS)]
    for w in workers:
        w.start()
    deadline = start + duration + TIMEOUT_S + 5
    next_line = time.monotonic() + 10
    while (alive := [w for w in workers if w.is_alive()]) and time.monotonic() < deadline:
        # A second at a time, so SIGTERM's handler runs between joins.
        alive[0].join(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        if stop.is_set():  # requests in flight end by their own timeout
            deadline = min(deadline, time.monotonic() + TIMEOUT_S + 1)
        elif time.monotonic() >= next_line:
            next_line += 10
            with lock:
                print(f"traffic: {sum(statuses.values())} answered, {failed} failed, "
                      f"{int(time.monotonic() - start)} s of {duration:g}", flush=True)
    latencies.sort()
    summary = {"url": plan["url"], "planned": total, "sent": sum(statuses.values()) + failed,
               "statuses": {str(k): v for k, v in sorted(statuses.items())},
               "server_errors": sum(v for k, v in statuses.items() if k >= 500), "failed": failed,
               "failures": failures, "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2)
               if latencies else None, "stopped_early": stop.is_set()}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
