"""Canary analysis: how the canary compares with stable over one step, from production's own
Prometheus metrics.

Every pod serving the Bento exports BentoML's request counter and latency histogram (and, when the
project has one, its decision counter) on /metrics. A step is judged on the *increase* of those
series between a scrape at its start and one at its end, summed per track (canary, stable), the
way Prometheus' `increase()` treats counters: a series that went down was reset (a restarted
pod), so its whole current value is the increase. Probes and /metrics are not traffic.

Pure functions of scraped text, so every rule is unit-tested without a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from shipyard.config import Canary, DecisionMetric
from shipyard.harness.gates import GateResult, judge

REQUESTS = "bentoml_service_request"
DURATION = "bentoml_service_request_duration_seconds"
# Paths that are the platform talking to the pod, not clients: never counted as traffic.
NOT_TRAFFIC = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/schema.json", "/docs.json", "/docs", "/",
                         "other"})

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Snapshot:
    """One pod's counters at one moment: requests and errors, latency buckets, decisions."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count
    decided: float = 0.0
    positive: float = 0.0


def parse(text: str, decision: DecisionMetric | None = None) -> Snapshot:
    """A pod's /metrics page reduced to what a canary is judged on."""
    requests = errors = decided = positive = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if family.name == REQUESTS and sample.name == REQUESTS + "_total":
                if labels.get("endpoint") in NOT_TRAFFIC:
                    continue
                requests += sample.value
                if labels.get("http_response_code", "").startswith("5"):
                    errors += sample.value
            elif family.name == DURATION and sample.name == DURATION + "_bucket":
                if labels.get("endpoint") in NOT_TRAFFIC:
                    continue
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif decision and family.name == decision.metric.removesuffix("_total") \
                    and sample.name == family.name + "_total":
                decided += sample.value
                if labels.get(decision.label) == decision.value:
                    positive += sample.value
    return Snapshot(requests, errors, buckets, decided, positive)


def _increase(before: float | None, after: float) -> float:
    return after if before is None or after < before else after - before


def increase(before: Snapshot | None, after: Snapshot) -> Snapshot:
    """What one pod did between two scrapes (a pod absent at the start counts from zero)."""
    if before is not None and after.requests < before.requests:
        before = None  # the pod restarted: its counters began again
    b = before or Snapshot()
    return Snapshot(_increase(b.requests, after.requests), _increase(b.errors, after.errors),
                    {le: _increase(b.buckets.get(le), n) for le, n in after.buckets.items()},
                    _increase(b.decided, after.decided), _increase(b.positive, after.positive))


def total(snapshots: list[Snapshot]) -> Snapshot:
    buckets: dict[float, float] = {}
    for s in snapshots:
        for le, n in s.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + n
    return Snapshot(sum(s.requests for s in snapshots), sum(s.errors for s in snapshots), buckets,
                    sum(s.decided for s in snapshots), sum(s.positive for s in snapshots))


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):  # beyond the last finite bucket: its bound is all that is known
                return lower_bound
            width = count - lower_count
            return bound if width <= 0 else lower_bound + (bound - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = bound, count
    return lower_bound


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass(frozen=True)
class StepMetrics:
    canary: Snapshot
    stable: Snapshot

    def measured(self) -> dict[str, float | None]:
        """Every canary metric; None where there was nothing to measure (which fails its gate)."""
        c, s = self.canary, self.stable
        error_rate = _ratio(c.errors, c.requests)
        stable_error_rate = _ratio(s.errors, s.requests)
        p99_c, p99_s = quantile(0.99, c.buckets), quantile(0.99, s.buckets)
        decision_c, decision_s = _ratio(c.positive, c.decided), _ratio(s.positive, s.decided)
        return {
            "requests": c.requests,
            "error_rate": error_rate,
            "stable_error_rate": stable_error_rate,
            "error_rate_increase": None if error_rate is None or stable_error_rate is None
            else error_rate - stable_error_rate,
            "p99_ms": None if p99_c is None else p99_c * 1000,
            "p99_ratio": _ratio(p99_c, p99_s),
            "decision_rate": decision_c,
            "decision_rate_shift": None if decision_c is None or decision_s is None else abs(decision_c - decision_s),
        }


def judge_step(settings: Canary, metrics: StepMetrics) -> list[GateResult]:
    """The step's gates, in the order written; a metric with no data fails, as in staging."""
    measured = metrics.measured()
    return [judge("canary", metric, bound, measured[metric], True) for metric, bound in settings.gates.items()]


def replicas_for(share_pct: int, stable_replicas: int) -> tuple[int, float]:
    """Canary pods for a share of the endpoints with stable kept whole (Argo Rollouts' basic
    canary): at least one; and the share whole pods actually give."""
    canary = max(1, round(stable_replicas * share_pct / (100 - share_pct)))
    return canary, canary / (canary + stable_replicas)
