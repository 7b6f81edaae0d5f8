"""Stress: find where the service saturates, offer `overload_factor` x that, open loop, then check
that it recovers. Its generator (shipyard/harness/open_loop.py) is the one `make bench` measures
with: open loop, so an overload is offered whatever the answers do, and it reports its own CPU and
lateness, so a run that measured the generator says so instead of passing.

Phases (settings are SHIPYARD_SUITE_<NAME> environment variables, from environment.yaml's
suites.stress):
- ramp: `start_rps`, then x `step_factor` every `step_s` seconds, until a step is saturated (its
  answers fall under 90 % of the offer, it refuses over 1 %, or its p95 passes `p95_ms_limit`) or
  `peak_rps` is reached. The saturation is the most answers per second any step completed;
- overload: `overload_factor` x the saturation for `overload_s` seconds;
- recovery: 0.3 x the saturation, until the first 2-second window all answered (2xx) with
  p95 <= `p95_ms_limit` (at most `recovery_s` seconds).

A real-time service refuses what it cannot answer in time, so a 503 (or BentoML's own 429) is the
designed answer under overload, counted apart from errors.

A run that cannot tell what overload does is inconclusive and every metric is then missing, so
every stress gate fails with the reason ("no data: ..."): the service never saturated below
`peak_rps`, the generator was the bottleneck (it fell behind and the service answered all it
sent), or the overload offered less than the saturation. A generator that fell behind but still
sent more than the service could answer did its job: that run counts.

The report (SHIPYARD_STRESS_REPORT, else stdout) is JSON: metrics, the reason if inconclusive,
the ramp's steps, and a per-second timeline of offered, answered and refused requests.

    SHIPYARD_TARGET_URL=http://127.0.0.1:3001 SHIPYARD_SAMPLES=tests/staged/samples.json \\
        python -m shipyard.harness.staged.stress
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time

from shipyard.harness import open_loop
from shipyard.harness.open_loop import Phase, Request
from shipyard.harness.staged.traffic import TrafficError, plan
from shipyard.harness.stress import (RECOVERY_LOAD, SETTINGS, Generator, Step, measure_step, recovered,
                                     summarize, timeline)

MIX = 100  # requests in the mix the generator sends in turn
# The most requests in flight at the service at once, in every ramp step, and in the overload of a
# service that queues it (its saturated step refused nothing: BentoML's own server, a long
# deadline). Such a service needs rate x latency connections, and opening thousands took the
# generator's CPU (make test's CI: the README walkthrough's cluster stress sent 57 % of its
# overload; capped, all of it, at CPU 0.10; uncapped, a ramp step opened 8 096 and 1 016 requests
# failed). Past the cap, requests wait in the generator, their wait in their latency.
MAX_IN_FLIGHT = 2048


def overload_connections(saturated: Step, rate: float, deadline_ms: float) -> int:
    """The overload's connections, all opened before it starts and never more.

    A service that refuses (its saturated step did) gets one deadline's worth of the overload's
    requests in flight (rate x deadline): its admission control sees a full deadline of backlog,
    and anything past that waits in the generator, counted in its latency. The overload opens no
    connection of its own: answering a slow moment with new connections was a storm of SYNs (7 382
    connections from a fresh machine's `make cluster-demo`), and the local cluster's NetworkPolicy
    enforcer judges every new connection in userspace, so it dropped half of them (nfnetlink_queue
    user_dropped 15 801 of 30 274): 1 s retransmissions in the latencies (answered p99 874 ms)
    that measure the cluster's firewall, not the service. A service that queues gets MAX_IN_FLIGHT."""
    if saturated.refused_share <= 0:
        return MAX_IN_FLIGHT
    return max(64, min(open_loop.MAX_CONNECTIONS, math.ceil(rate * deadline_ms / 1000)))


def setting(name: str) -> float:
    return float(os.environ.get(f"SHIPYARD_SUITE_{name.upper()}", SETTINGS[name]))


def requests_for(url: str) -> list[Request]:
    """The load suite's bodies and route shares (traffic.plan) as a fixed mix of MIX requests in
    a seeded order."""
    bodies, shares = plan(url)
    total = sum(shares.values())
    mix: list[Request] = []
    for route, share in shares.items():
        count = max(1, round(MIX * share / total))
        mix += [Request(route, body.content, body.content_type)
                for body in (bodies[route][i % len(bodies[route])] for i in range(count))]
    random.Random(7).shuffle(mix)
    return mix


def _generator(run: open_loop.Run, phase: str) -> Generator:
    """What the generator cost in `run`, and the share of `phase`'s rate it offered."""
    summary = open_loop.generator_summary(run)
    seconds = run.phase_seconds[phase]
    return Generator(cpu=summary["client_cpu"], lag_p99_ms=summary["send_lag_p99_ms"],
                     offered_share=seconds / (seconds + run.phase_behind_s[phase]) if seconds else 1.0)


def stress(url: str, progress=lambda line: print(line, file=sys.stderr, flush=True)) -> dict:
    start_rps, factor, peak = setting("start_rps"), setting("step_factor"), setting("peak_rps")
    step_s, limit = setting("step_s"), setting("p95_ms_limit")
    if start_rps <= 0 or factor <= 1 or peak < start_rps or step_s <= 0:
        raise ValueError("suites.stress: start_rps > 0, step_factor > 1, peak_rps >= start_rps and step_s > 0")
    requests = requests_for(url)
    every: list = []
    runs: list[open_loop.Run] = []
    steps: list[Step] = []
    began = time.perf_counter()
    rate = start_rps
    while True:
        phase = Phase(f"step {len(steps) + 1}", rate, step_s)
        run = open_loop.run(url, requests, [phase], max_connections=MAX_IN_FLIGHT, loopback_only=False)
        runs.append(run)
        every += run.samples
        step = measure_step(run.samples, run.phase_started[phase.name], step_s, rate, _generator(run, phase.name))
        steps.append(step)
        late = f" (sent {step.sent_rps:.0f}/s: the generator fell behind)" if step.generator.behind else ""
        progress(f"stress: offered {rate:.0f}/s{late}, answered {step.answered_rps:.0f}/s, refused "
                 f"{step.refused_share:.1%}, generator CPU {step.generator.cpu:.2f}")
        if step.saturated(limit) or step.generator.bound or rate >= peak:
            break
        rate = min(peak, rate * factor)
    saturation = max(s.answered_rps for s in steps)
    overload: list = []
    recovery: list = []
    recovery_started = 0.0
    overload_generator = None
    overload_rate = setting("overload_factor") * saturation
    overload_s = setting("overload_s")
    if steps[-1].saturated(limit) and overload_rate > 0:
        recovery_rate = max(1.0, RECOVERY_LOAD * saturation)
        phases = [Phase("overload", overload_rate, overload_s),
                  Phase("recovery", recovery_rate, setting("recovery_s"),
                        until=lambda mine: recovered(mine, recovery_rate, limit))]
        progress(f"stress: saturation {saturation:.0f}/s; overload at {overload_rate:.0f}/s for {overload_s:g} s, "
                 f"then recovery at {recovery_rate:.0f}/s")
        pool = overload_connections(steps[-1], overload_rate, limit)
        run = open_loop.run(url, requests, phases, connections=pool, max_connections=pool, loopback_only=False)
        runs.append(run)
        every += run.samples
        overload = [s for s in run.samples if s[1] == "overload"]
        recovery = [s for s in run.samples if s[1] == "recovery"]
        recovery_started = run.phase_started["recovery"]
        overload_generator = _generator(run, "overload")
    result = summarize(steps, overload, overload_rate, overload_s, recovery, recovery_started, every, limit,
                       overload_generator)
    result["timeline"] = timeline(every, began)
    result["generator"] = "shipyard/harness/open_loop.py (open loop, uvloop + httptools, one process)"
    # The most connections open, and how many requests waited for one (at the overload's cap).
    result["connections"] = {"most_open": max(r.connections for r in runs),
                             "waited_for_one": sum(r.queued_for_connection for r in runs)}
    return result


def main() -> int:
    url = os.environ.get("SHIPYARD_TARGET_URL", "")
    if not url:
        print("error: SHIPYARD_TARGET_URL must name the server to stress (http://host:port)", file=sys.stderr)
        return 2
    try:
        result = stress(url)
    except (TrafficError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = os.environ.get("SHIPYARD_STRESS_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(result, f)
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
