"""Canary analysis from Prometheus text: increases, resets, quantiles, gates, pod shares."""

from __future__ import annotations

import pytest

from shipyard.analysis import StepMetrics, Snapshot, increase, judge_step, parse, quantile, replicas_for, total
from shipyard.config import Bound, Canary, DecisionMetric

DECISION = DecisionMetric(metric="shipyard_decisions_total", label="decision", value="fraud")


def page(ok: int, errors: int = 0, probes: int = 50, fraud: int = 0, legit: int = 0,
         buckets: dict[str, int] | None = None) -> str:
    """A /metrics page as shipyard's server writes it (BentoML's names and labels)."""
    labels = 'endpoint="{e}",http_response_code="{c}",runner_name="s",service_name="s",service_version="v"'
    lines = ["# HELP bentoml_service_request_total Total number of runner RPC",
             "# TYPE bentoml_service_request_total counter",
             f"bentoml_service_request_total{{{labels.format(e='/score', c='200')}}} {ok}.0",
             f"bentoml_service_request_total{{{labels.format(e='/readyz', c='200')}}} {probes}.0"]
    if errors:
        lines.append(f"bentoml_service_request_total{{{labels.format(e='/score', c='500')}}} {errors}.0")
    lines += ["# HELP bentoml_service_request_duration_seconds runner RPC duration in seconds",
              "# TYPE bentoml_service_request_duration_seconds histogram"]
    for le, n in (buckets or {"0.005": ok + errors, "0.01": ok + errors, "+Inf": ok + errors}).items():
        lines.append(f'bentoml_service_request_duration_seconds_bucket{{{labels.format(e="/score", c="200")},le="{le}"}} {n}.0')
    lines.append(f'bentoml_service_request_duration_seconds_bucket{{{labels.format(e="/readyz", c="200")},le="+Inf"}} {probes}.0')
    lines += ["# HELP shipyard_decisions_total Scores returned, by decision.", "# TYPE shipyard_decisions_total counter",
              f'shipyard_decisions_total{{decision="fraud"}} {fraud}.0',
              f'shipyard_decisions_total{{decision="legitimate"}} {legit}.0']
    return "\n".join(lines) + "\n"


def test_parse_counts_api_traffic_not_probes():
    snap = parse(page(ok=90, errors=10, probes=500, fraud=30, legit=60), DECISION)
    assert (snap.requests, snap.errors, snap.decided, snap.positive) == (100, 10, 90, 30)
    assert snap.buckets[float("inf")] == 100  # the probe's bucket is not traffic


def test_increase_is_the_difference_and_a_reset_counts_from_zero():
    before, after = parse(page(ok=100, errors=1), DECISION), parse(page(ok=160, errors=4), DECISION)
    grown = increase(before, after)
    assert (grown.requests, grown.errors) == (63, 3)
    restarted = increase(parse(page(ok=500), DECISION), parse(page(ok=20), DECISION))
    assert restarted.requests == 20  # the pod restarted: its counters began again
    new_pod = increase(None, parse(page(ok=7), DECISION))
    assert new_pod.requests == 7


def test_quantile_interpolates_like_histogram_quantile():
    buckets = {0.005: 50.0, 0.01: 90.0, 0.025: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.005)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.015 * 9 / 10)
    assert quantile(0.99, {}) is None
    assert quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 10.0, float("inf"): 100.0}) == 0.1  # beyond the last bucket: its bound


def _settings(**gates: Bound) -> Canary:
    return Canary(steps=[25, 50], pause_s=10, decision=DECISION,
                  gates={"requests": Bound(min=50), **gates})


def test_a_clean_canary_passes_and_an_erroring_one_fails_on_error_rate():
    settings = _settings(error_rate=Bound(max=0.01), stable_error_rate=Bound(max=0))
    stable = total([parse(page(ok=300), DECISION)] * 2)
    clean = StepMetrics(parse(page(ok=150), DECISION), stable)
    assert all(g.passed for g in judge_step(settings, clean))
    failing = StepMetrics(parse(page(ok=142, errors=8), DECISION), stable)
    results = {g.metric: g for g in judge_step(settings, failing)}
    assert not results["error_rate"].passed and results["error_rate"].measured == pytest.approx(8 / 150)
    assert results["stable_error_rate"].passed


def test_no_traffic_fails_every_gate_that_needs_it():
    settings = _settings(error_rate=Bound(max=0.01), p99_ratio=Bound(max=2))
    idle = StepMetrics(Snapshot(), Snapshot())
    results = {g.metric: g for g in judge_step(settings, idle)}
    assert not results["requests"].passed and results["requests"].measured == 0
    assert not results["error_rate"].passed and "no data" in results["error_rate"].reason
    assert not results["p99_ratio"].passed and "no data" in results["p99_ratio"].reason


def test_a_slower_canary_fails_p99_ratio_and_a_shifted_one_fails_decision_shift():
    settings = _settings(p99_ratio=Bound(max=2), decision_rate_shift=Bound(max=0.1))
    stable = parse(page(ok=100, fraud=10, legit=90, buckets={"0.005": 100, "0.025": 100, "+Inf": 100}), DECISION)
    slow_shifted = parse(page(ok=100, fraud=40, legit=60, buckets={"0.005": 0, "0.025": 100, "+Inf": 100}), DECISION)
    measured = StepMetrics(slow_shifted, stable).measured()
    assert measured["p99_ratio"] > 2 and measured["decision_rate_shift"] == pytest.approx(0.3)
    assert {g.metric for g in judge_step(settings, StepMetrics(slow_shifted, stable)) if not g.passed} == \
        {"p99_ratio", "decision_rate_shift"}


@pytest.mark.parametrize("share, stable, pods, actual", [
    (25, 3, 1, 0.25), (50, 2, 2, 0.5), (34, 2, 1, 1 / 3), (10, 2, 1, 1 / 3), (90, 1, 9, 0.9)])
def test_replicas_for_a_share_keep_stable_whole(share, stable, pods, actual):
    assert replicas_for(share, stable) == (pods, pytest.approx(actual))
