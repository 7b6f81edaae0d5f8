"""Gates are judged strictly: bounds inclusive, and no data is a failure, never a pass."""

from __future__ import annotations

import math

from shipyard.config import Bound
from shipyard.harness.gates import evaluate, judge


def test_bounds_are_inclusive_and_name_the_threshold():
    assert judge("load", "p95_ms", Bound(max=50), 50, True).passed
    failed = judge("load", "p95_ms", Bound(max=50), 50.5, True)
    assert not failed.passed and failed.reason == "50.5 > max 50"
    assert judge("acceptance", "roc_auc", Bound(min=0.9), 0.89, True).reason == "0.89 < min 0.9"


def test_no_data_fails():
    assert judge("load", "p95_ms", Bound(max=50), None, True).reason == "no data: suite load produced no p95_ms"
    assert not judge("load", "p95_ms", Bound(max=50), math.nan, True).passed
    assert judge("load", "p95_ms", Bound(max=50), 1, False).reason == "no data: suite load did not run"


def test_evaluate_covers_only_requested_suites_in_order():
    gates = {"load": {"rps": Bound(min=1)}, "smoke": {"failed": Bound(max=0)}}
    results = evaluate(gates, {"smoke": {"failed": 0}}, {"smoke"}, ["smoke"])
    assert [(r.suite, r.passed) for r in results] == [("smoke", True)]


