"""Every promotion refusal, as a pure function of the facts: no server, no environment files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shipyard.config import Environment
from shipyard.evidence import Verdict
from shipyard.policy import PromotionFacts, refusal

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
IMAGE = "registry/app@sha256:" + "a" * 64
OTHER = "registry/app@sha256:" + "b" * 64
STAGING = Environment.model_validate({"name": "staging", "promotion": {"to": "production"},
                                      "gates": {"smoke": {"failed": {"max": 0}}, "load": {"rps": {"min": 1}}}})


def verdict(subject: str = IMAGE, passed: bool = True, suites=("smoke", "load"), age_h: float = 1) -> Verdict:
    gates = [{"suite": "load", "metric": "rps", "passed": passed, "reason": "within bounds" if passed else "0.5 < min 1"}]
    return Verdict.model_validate({
        "environment": "staging", "target": "kubernetes", "subject": {"image": subject},
        "suites": [{"name": s, "status": "passed"} for s in suites], "gates": gates, "passed": passed,
        "started_at": (NOW - timedelta(hours=age_h, minutes=3)).isoformat(),
        "finished_at": (NOW - timedelta(hours=age_h)).isoformat()})


def facts(**changes) -> PromotionFacts:
    base = dict(source=STAGING, destination="", subject=IMAGE, verdicts=[verdict()], approved=True, now=NOW)
    return PromotionFacts(**{**base, **changes})


def test_a_fresh_passing_verdict_for_what_runs_is_allowed():
    assert refusal(facts()) is None


@pytest.mark.parametrize("changes,says", [
    ({"source": Environment(name="staging")}, "has no promotion section"),
    ({"destination": "qa"}, "promotes to production, not qa"),
    ({"subject": ""}, "nothing is running in staging"),
    ({"source_state": "not ready: stream-worker", "source_problems": ("deployment/stream-worker: CrashLoopBackOff",)},
     "staging is not ready: stream-worker: deployment/stream-worker: CrashLoopBackOff"),
    ({"verdicts": []}, "no verdict for staging: run `shipyard verify staging`"),
    ({"verdicts": [verdict(OTHER)]}, "it changed since it was verified"),
    ({"verdicts": [verdict(suites=("smoke",))]}, "did not run load, which staging gates"),
    ({"verdicts": [verdict(passed=False)]}, "failed: load.rps (0.5 < min 1)"),
    ({"verdicts": [verdict(age_h=25)]}, "the verdict is 25.0 h old (promotion.max_verdict_age_h is 24)"),
    ({"parity_breaks": ["Deployment/app spec.template.spec.containers.image"]}, "differ outside parity.allow"),
    ({"approved": False}, "requires approval"),
])
def test_each_rule_refuses_naming_the_fix(changes, says):
    reason = refusal(facts(**changes))
    assert reason is not None and says in reason


def test_only_the_latest_verdict_counts():
    assert "failed" in refusal(facts(verdicts=[verdict(), verdict(passed=False)]))
    assert refusal(facts(verdicts=[verdict(passed=False), verdict()])) is None


def test_a_dry_run_needs_no_approval():
    assert refusal(facts(approved=False, dry_run=True)) is None
