"""Declarative gates (`metric: {min|max: value}`) judged against what the suites measured.

Like Flagger's and Argo Rollouts' analyses, every gate names its metric, threshold and measured
value; unlike them, a gate whose metric produced no data fails - it never passes by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shipyard.config import Bound


@dataclass(frozen=True)
class GateResult:
    suite: str
    metric: str
    min: float | None
    max: float | None
    measured: float | None
    passed: bool
    reason: str


def judge(suite: str, metric: str, bound: Bound, measured: float | None, ran: bool, why_no_data: str = "") -> GateResult:
    """One gate. `why_no_data`: what the suite said about why it measured nothing conclusive (an
    inconclusive stress run), given as the reason of every gate it leaves without data."""
    def result(passed: bool, reason: str) -> GateResult:
        return GateResult(suite, metric, bound.min, bound.max, measured, passed, reason)

    if not ran:
        return result(False, f"no data: suite {suite} did not run")
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return result(False, f"no data: {why_no_data}" if why_no_data else f"no data: suite {suite} produced no {metric}")
    if bound.min is not None and measured < bound.min:
        return result(False, f"{measured:g} < min {bound.min:g}")
    if bound.max is not None and measured > bound.max:
        return result(False, f"{measured:g} > max {bound.max:g}")
    return result(True, "within bounds")


def evaluate(gates: dict[str, dict[str, Bound]], measured: dict[str, dict[str, float | None]],
             ran: set[str], suites: list[str], why_no_data: dict[str, str] | None = None) -> list[GateResult]:
    """Every gate of every suite that was asked for, in suite order."""
    results = []
    for suite in suites:
        for metric, bound in gates.get(suite, {}).items():
            results.append(judge(suite, metric, bound, measured.get(suite, {}).get(metric), suite in ran,
                                 (why_no_data or {}).get(suite, "")))
    return results
