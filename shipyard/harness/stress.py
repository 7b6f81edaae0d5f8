"""The stress suite's arithmetic, apart from the generator so it can be tested (and read) on its
own: from every request's (due time, phase, latency, status) and what the generator cost, where
the service saturated, what an overload past it did, how soon it recovered, and whether the run
could tell at all. staged/stress/__main__.py runs the phases and calls this.

Every time here is the generator's clock (time.perf_counter seconds). A request's latency counts
from when it was due, so a late generator cannot hide the server's queue; a rate of answers counts
them by when they were completed, so a growing queue shows as answers falling behind the offer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

WINDOW_S = 2.0
GENERATOR_BOUND_CPU = 0.9
# The share of a phase's rate the generator must have offered for the phase to count: one that
# ends a phase behind its own schedule (starved of CPU, or at a core's worth of it) offered less
# than asked. Its lateness along the way is in every latency it reports (they count from when each
# request was due), so a generator that catches up still measured the service.
OFFERED_SHARE = 0.9
Sample = tuple[float, str, float, int]  # due time, phase, ms from due to answer, HTTP status (0: no answer)
# A refusal, not an error: shipyard's admission (503 + Retry-After) and BentoML's own concurrency
# limit (`traffic.max_concurrency`: 429 Too Many Requests).
REFUSALS = (429, 503)


def ok(status: int) -> bool:
    """An answer: 200, or the 2xx an API sets through its bentoml.Context (201, 202, ...)."""
    return 200 <= status < 300
# A step is past saturation when its answers fall behind what was offered, or it refuses, or its
# answers get slower than the limit a user set (p95_ms_limit).
ANSWERED_SHARE = 0.9
REFUSED_SHARE = 0.01
# The load the recovery is judged at, as a share of the saturation measured.
RECOVERY_LOAD = 0.3
# The suite's settings (environment.yaml suites.stress), with their defaults.
SETTINGS = {"start_rps": 20, "step_factor": 2, "peak_rps": 50_000, "step_s": 10, "overload_factor": 3,
            "overload_s": 30, "recovery_s": 20, "p95_ms_limit": 100}


def ramp_rates(settings: dict) -> list[float]:
    """Every rate the ramp may offer, start to peak: how long the suite can take."""
    rate, peak, factor = float(settings["start_rps"]), float(settings["peak_rps"]), float(settings["step_factor"])
    rates = [rate]
    while rate < peak and factor > 1:
        rate = min(peak, rate * factor)
        rates.append(rate)
    return rates


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def done_at(sample: Sample) -> float:
    """When the answer came (due time plus its latency)."""
    return sample[0] + sample[2] / 1000


@dataclass(frozen=True)
class Generator:
    """What one run of the generator cost and did: its CPU share (1.0: a core), its lateness
    (p99, ms) and the share of the asked rate it offered (its phase's length over the time it took
    to send it: 1.0 when it kept to its schedule)."""

    cpu: float
    lag_p99_ms: float
    offered_share: float = 1.0

    @property
    def behind(self) -> bool:
        """It ended its phase late (starved of CPU on a shared node, or at a core's worth of it)."""
        return self.offered_share < OFFERED_SHARE

    @property
    def bound(self) -> bool:
        return self.cpu >= GENERATOR_BOUND_CPU or self.behind


@dataclass(frozen=True)
class Step:
    """One step of the ramp, judged on its second half (the first is the new rate settling)."""

    offered_rps: float
    answered_rps: float
    refused_share: float
    p95_ms: float | None
    generator: Generator

    @property
    def sent_rps(self) -> float:
        """What the generator really offered: the asked rate, less what it fell behind."""
        return self.offered_rps * self.generator.offered_share

    def saturated(self, p95_limit_ms: float) -> bool:
        """Past saturation by what the service did with what it was sent: it refused, or its answers
        fell behind. A late generator still saturates a service that cannot keep up with what it did
        send (make test's CI, stop 41: a generator pod starved to 0.18 CPU on the node it shares with
        the scorer sent 87 % of 6 400/s). A slow p95 counts only from a generator on time: a late
        one's lateness is in every latency (they count from when each request was due)."""
        if self.refused_share > REFUSED_SHARE or self.answered_rps < ANSWERED_SHARE * self.sent_rps:
            return True
        return not self.generator.behind and self.p95_ms is not None and self.p95_ms > p95_limit_ms


def measure_step(samples: list[Sample], start: float, seconds: float, rate: float, generator: Generator) -> Step:
    """A ramp step from its samples: answers completed in its second half, per second."""
    half = start + seconds / 2
    end = start + seconds
    completed = [s for s in samples if half <= done_at(s) < end]
    answered = [s for s in completed if ok(s[3])]
    refused = sum(1 for s in completed if s[3] in REFUSALS)
    due = [s for s in samples if half <= s[0] < end]
    return Step(offered_rps=rate, answered_rps=len(answered) / max(end - half, 1e-9),
                refused_share=refused / len(due) if due else 0.0,
                p95_ms=percentile([s[2] for s in due if ok(s[3])], 0.95), generator=generator)


def recovery_seconds(samples: list[Sample], started: float, p95_limit_ms: float) -> float | None:
    """Seconds from `started` to the end of the first 2-second window (sliding by 0.5 s) whose
    requests were all answered (2xx) with p95 <= the limit: back to normal, not merely answering."""
    last = max((t for t, *_ in samples), default=started)
    t = started
    while t + WINDOW_S <= last + 1e-9:
        window = [x for x in samples if t <= x[0] < t + WINDOW_S]
        good = [rt for _, _, rt, s in window if ok(s)]
        p95 = percentile(good, 0.95)
        if good and len(good) == len(window) and p95 is not None and p95 <= p95_limit_ms:
            return round(t + WINDOW_S - started, 1)
        t += 0.5
    return None


def recovered(samples: list[Sample], rate: float, p95_limit_ms: float) -> bool:
    """While the recovery phase runs: the last complete 2-second window (ending half a second
    before the newest request due, so its answers are in) was all answered 200, fast enough."""
    if not samples:
        return False
    newest = max(s[0] for s in samples[-2000:])
    window = [s for s in samples[-int(rate * 4 + 100):] if newest - 2.5 <= s[0] < newest - 0.5]
    good = [s[2] for s in window if ok(s[3])]
    p95 = percentile(good, 0.95)
    return (len(window) >= 0.95 * rate * WINDOW_S and len(good) == len(window)
            and p95 is not None and p95 <= p95_limit_ms)


def inconclusive(steps: list[Step], p95_limit_ms: float, overload_sent: float | None,
                 overload_generator: Generator | None) -> str | None:
    """Why the run cannot say what overload does to the service, or None when it can. A generator
    that fell behind is the bottleneck only where the service kept up with what it did send."""
    if not steps:
        return "no ramp step ran"
    last = steps[-1]  # the ramp stops at its first saturated step, or where the generator could go no further
    if not last.saturated(p95_limit_ms):
        if last.generator.bound:
            return (f"the generator could not saturate the service: it was the bottleneck (CPU {last.generator.cpu:.2f}, "
                    f"{last.generator.offered_share:.0%} of {last.offered_rps:.0f}/s offered, all of it answered)")
        return (f"the service was never saturated: it answered {last.answered_rps:.0f} of {last.offered_rps:.0f} "
                "requests/s at the ramp's peak (raise suites.stress.peak_rps)")
    saturation = max(s.answered_rps for s in steps)
    if overload_sent is not None and overload_sent <= saturation:
        if overload_generator is not None and overload_generator.bound:
            return (f"the generator could not overload the service (CPU {overload_generator.cpu:.2f}, "
                    f"{overload_generator.offered_share:.0%} of the overload's rate offered: {overload_sent:.0f}/s, "
                    f"no more than the saturation measured, {saturation:.0f}/s)")
        return (f"the overload offered {overload_sent:.0f} requests/s, less than the saturation measured "
                f"({saturation:.0f}/s): raise suites.stress.overload_factor")
    return None


def summarize(steps: list[Step], overload: list[Sample], overload_rate: float, overload_seconds: float,
              recovery: list[Sample], recovery_started: float, every: list[Sample], p95_limit_ms: float,
              overload_generator: Generator | None) -> dict:
    """The suite's metrics (each None where the run has no data), the reason a run is
    inconclusive (then every metric is None: no gate can pass on it), and what the report charts."""
    share = overload_generator.offered_share if overload_generator else 1.0
    overload_sent = overload_rate * share if overload else None
    overload_seconds = overload_seconds / share  # how long it took to offer the phase
    why = inconclusive(steps, p95_limit_ms, overload_sent, overload_generator)
    answered = [s[2] for s in overload if ok(s[3])]
    refused = [s[2] for s in overload if s[3] in REFUSALS]
    errors = sum(1 for s in every if not ok(s[3]) and s[3] not in REFUSALS)
    generators = [s.generator for s in steps] + ([overload_generator] if overload_generator else [])
    measured = {
        "saturation_rps": round(max((s.answered_rps for s in steps), default=0.0), 1) if steps else None,
        "overload_offered_rps": round(overload_sent, 1) if overload_sent is not None else None,
        "overload_answered_rps": round(len(answered) / overload_seconds, 1) if overload and overload_seconds else None,
        "overload_rejected_share": round(len(refused) / len(overload), 4) if overload else None,
        "answered_p99_ms": percentile(answered, 0.99),
        # No refusal during an overload is no data about refusals, not a fast one.
        "rejection_p99_ms": percentile(refused, 0.99),
        "server_errors": errors,
        "server_error_rate": errors / len(every) if every else None,
        "recovery_s": recovery_seconds(recovery, recovery_started, p95_limit_ms) if recovery else None,
        "requests": len(every),
        "generator_cpu": round(max((g.cpu for g in generators), default=0.0), 2),
        "generator_lag_p99_ms": round(max((g.lag_p99_ms for g in generators), default=0.0), 1),
    }
    return {
        "metrics": {name: None for name in measured} if why else measured,
        "measured": measured,
        "inconclusive": why,
        "steps": [{**{k: v for k, v in asdict(s).items() if k != "generator"},
                   "answered_rps": round(s.answered_rps, 1), "generator_cpu": round(s.generator.cpu, 2),
                   "generator_lag_p99_ms": round(s.generator.lag_p99_ms, 1),
                   "generator_offered_share": round(s.generator.offered_share, 3)} for s in steps],
    }


def timeline(samples: list[Sample], start: float) -> list[dict[str, float | None]]:
    """Per second from `start`: requests offered (by when they were due), answered and refused (by
    when the answer came), and the answers' latency: what the report charts."""
    seconds: dict[int, dict[str, list]] = {}
    for s in samples:
        due = seconds.setdefault(int(s[0] - start), {"due": [], "done": []})
        due["due"].append(s)
        done = seconds.setdefault(int(done_at(s) - start), {"due": [], "done": []})
        done["done"].append(s)
    rows = []
    for t in sorted(k for k in seconds if k >= 0):
        due, done = seconds[t]["due"], seconds[t]["done"]
        good = [s[2] for s in due if ok(s[3])]
        rows.append({"t": float(t), "offered_rps": float(len(due)),
                     "answered_rps": float(sum(1 for s in done if ok(s[3]))),
                     "refused_rps": float(sum(1 for s in done if s[3] in REFUSALS)),
                     "p50_ms": percentile(good, 0.5), "p95_ms": percentile(good, 0.95), "p99_ms": percentile(good, 0.99)})
    return rows
