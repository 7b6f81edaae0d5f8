"""The stress suite's arithmetic, apart from locust so it can be tested (and read) on its own:
from every request's (time, name, latency, status) and the phases the load shape went through,
what overload did to the service. tests/staged/stress/locustfile.py collects and calls this."""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_S = 2.0
GENERATOR_BOUND_CPU = 0.9
Sample = tuple[float, str, float, int]  # wall-clock time, request name, response ms, HTTP status (0: no answer)
# A refusal, not an error: shipyard's admission (503 + Retry-After) and BentoML's own concurrency
# limit (`traffic.max_concurrency`: 429 Too Many Requests).
REFUSALS = (429, 503)


@dataclass
class Phases:
    step_rps: list[tuple[int, float]] = field(default_factory=list)  # (users, answered req/s) per step
    # The load generator's CPU per step (1.0: a whole core). At 0.9 or more the step measured the
    # generator, not the service: its saturation is a lower bound of the service's.
    step_cpu: list[float] = field(default_factory=list)
    saturation_users: int | None = None
    overload_users: int | None = None
    overload_window: tuple[float, float] | None = None
    recovery_started: float | None = None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def answered_rps(samples: list[Sample], start: float, end: float) -> float:
    return sum(1 for t, _, _, s in samples if start <= t < end and s == 200) / max(end - start, 1e-9)


def recovery_seconds(samples: list[Sample], started: float, p95_limit_ms: float) -> float | None:
    """Seconds from `started` to the end of the first 2-second window (sliding by 0.5 s) whose
    requests were all answered 200 with p95 <= the limit: back to normal, not merely answering."""
    last = max((t for t, *_ in samples), default=started)
    t = started
    while t + WINDOW_S <= last + 1e-9:
        window = [x for x in samples if t <= x[0] < t + WINDOW_S]
        ok = [rt for _, _, rt, s in window if s == 200]
        p95 = percentile(ok, 0.95)
        if ok and len(ok) == len(window) and p95 is not None and p95 <= p95_limit_ms:
            return round(t + WINDOW_S - started, 1)
        t += 0.5
    return None


def summarize(samples: list[Sample], phases: Phases, p95_limit_ms: float) -> dict:
    start, end = phases.overload_window or (0.0, 0.0)
    in_overload = [x for x in samples if start <= x[0] < end]
    answered = [rt for _, _, rt, s in in_overload if s == 200]
    rejected = [rt for _, _, rt, s in in_overload if s in REFUSALS]
    best = max(range(len(phases.step_rps)), key=lambda i: phases.step_rps[i][1], default=None)
    # The best step and the ones after it (the step that stopped the ramp may be the one where the
    # generator ran out of CPU while answering a little less).
    cpu = max(phases.step_cpu[best:], default=None) if best is not None else None
    return {
        "saturation_users": phases.saturation_users,
        "saturation_rps": max((rps for _, rps in phases.step_rps), default=None),
        "generator_cpu_at_saturation": round(cpu, 2) if cpu is not None else None,
        "generator_bound": cpu is not None and cpu >= GENERATOR_BOUND_CPU,
        "overload_users": phases.overload_users,
        "overload_answered_rps": len(answered) / (end - start) if end > start else None,
        "overload_rejected_share": len(rejected) / len(in_overload) if in_overload else None,
        "answered_p99_ms": percentile(answered, 0.99),
        # No refusal during the overload is data too: none was slow (0), unless nothing was answered.
        "rejection_p99_ms": percentile(rejected, 0.99) if rejected else (0.0 if answered else None),
        "server_errors": (errors := sum(1 for _, _, _, s in samples if s != 200 and s not in REFUSALS)),
        "server_error_rate": errors / len(samples) if samples else None,
        "recovery_s": recovery_seconds(samples, phases.recovery_started, p95_limit_ms)
        if phases.recovery_started is not None else None,
        "requests": len(samples),
        "steps": [{"users": u, "answered_rps": round(r, 1),
                   **({"generator_cpu": round(phases.step_cpu[i], 2)} if i < len(phases.step_cpu) else {})}
                  for i, (u, r) in enumerate(phases.step_rps)],
    }
