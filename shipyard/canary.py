"""A canary promotion's steps: grow the new digest's share of production step by step, judge each
step on production's own metrics, and abort at the first step that fails.

The caller (release.promote) holds the promotion lock throughout, records the outcome, and on
success replaces stable with the new digest; this module only walks the steps and, whatever
happens (a failed gate, a rollback's abort request, an error, Ctrl-C), leaves no canary behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from shipyard.analysis import StepMetrics, increase, judge_step, parse, replicas_for, total
from shipyard.config import Canary

if TYPE_CHECKING:
    from shipyard.targets.base import Canary as Track

WATCH_EVERY_S = 5.0


@dataclass
class CanaryRun:
    steps: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""  # why it stopped early ("" = every step passed)
    interrupted: bool = False  # by Ctrl-C: the caller records the abort, then lets it through

    @property
    def passed(self) -> bool:
        return not self.failure


def _measure(canary: "Track", settings: Canary, before: dict[str, dict[str, str]]) -> StepMetrics:
    after = canary.scrape()
    per_track = {}
    for track in ("canary", "stable"):
        start = {pod: parse(text, settings.decision) for pod, text in before.get(track, {}).items()}
        per_track[track] = total([increase(start.get(pod), parse(text, settings.decision))
                                  for pod, text in after[track].items()])
    return StepMetrics(per_track["canary"], per_track["stable"])


def _summary(measured: dict[str, float | None]) -> str:
    shown = [("requests", "{:.0f} requests"), ("error_rate", "error rate {:.4f}"), ("p99_ms", "p99 {:.1f} ms"),
             ("p99_ratio", "p99 {:.2f}x stable's"), ("decision_rate_shift", "decision shift {:.4f}")]
    return ", ".join(fmt.format(measured[k]) for k, fmt in shown if measured.get(k) is not None)


def _watch(canary: "Track", settings: Canary, before: dict[str, dict[str, str]], where: str, seconds: float,
           progress: Callable[[str], None], watch: bool) -> str:
    """Watch a step for `seconds`; who asked to abort it, or ""."""
    started = time.monotonic()
    next_watch = started + WATCH_EVERY_S
    while (left := seconds - (time.monotonic() - started)) > 0:
        aborted_by = canary.abort_requested()
        if aborted_by:
            return aborted_by
        if watch and time.monotonic() >= next_watch:
            progress(f"{where}: {_summary(_measure(canary, settings, before).measured())} so far")
            next_watch += WATCH_EVERY_S
        time.sleep(min(1.0, left))
    return ""


def _wait_for_sample(canary: "Track", settings: Canary, before: dict[str, dict[str, str]], where: str,
                     progress: Callable[[str], None]) -> tuple[StepMetrics, str]:
    """After pause_s, a step whose canary has answered fewer than `requests.min` keeps watching,
    up to max_wait_s: its metrics then, and who asked to abort meanwhile ("" = nobody)."""
    need = settings.gates["requests"].min or 0
    metrics = _measure(canary, settings, before)
    waited = time.monotonic()
    next_line = waited
    while (seen := metrics.canary.requests) < need and (left := settings.max_wait_s - (time.monotonic() - waited)) > 0:
        if time.monotonic() >= next_line:
            progress(f"{where}: waiting for traffic: {seen:.0f} of {need:g} requests so far, up to {left:.0f} s more")
            next_line += WATCH_EVERY_S
        aborted_by = canary.abort_requested()
        if aborted_by:
            return metrics, aborted_by
        time.sleep(min(2.0, left))
        metrics = _measure(canary, settings, before)
    return metrics, ""


def walk(canary: "Track", subject: str, settings: Canary, progress: Callable[[str], None], watch: bool = False) -> CanaryRun:
    """Every step of settings.steps against `canary` (a KubernetesCanary), in order.

    A step's judged window opens when its canary pods are all ready (however long they took, which
    the record keeps), lasts pause_s, and extends up to max_wait_s while the canary has answered
    fewer than `requests.min`; a step still short then fails as "not enough traffic", which is not
    a gate's verdict on the canary."""
    run = CanaryRun()
    stable = canary.stable_replicas()
    try:
        for number, share_pct in enumerate(settings.steps, start=1):
            pods, share = replicas_for(share_pct, stable)
            where = f"step {number}/{len(settings.steps)}"
            progress(f"{where}: {share_pct} % asked, {pods} canary : {stable} stable pods = {share:.0%} of "
                     f"production's endpoints, judged for {settings.pause_s:g} s once they are ready")
            asked = time.monotonic()
            canary.set(subject, pods, progress)
            ready_after = time.monotonic() - asked
            before = canary.scrape()
            started = time.monotonic()
            progress(f"{where}: canary pods ready after {ready_after:.0f} s; judging from now")
            aborted_by = _watch(canary, settings, before, where, settings.pause_s, progress, watch)
            if aborted_by:
                metrics = _measure(canary, settings, before)
            else:
                metrics, aborted_by = _wait_for_sample(canary, settings, before, where, progress)
            measured = metrics.measured()
            gates = judge_step(settings, metrics)
            seconds = time.monotonic() - started
            record = {"step": number, "share_asked_pct": share_pct, "canary_pods": pods, "stable_pods": stable,
                      "share": round(share, 4), "ready_after_s": round(ready_after, 1), "seconds": round(seconds, 1),
                      "measured": measured,
                      "gates": [{"metric": g.metric, "min": g.min, "max": g.max, "measured": g.measured,
                                 "passed": g.passed, "reason": g.reason} for g in gates]}
            run.steps.append(record)
            if aborted_by:
                run.failure = f"{where} ({share_pct} %) aborted by {aborted_by}"
                record["passed"], record["aborted_by"] = False, aborted_by
                progress(run.failure)
                break
            need = settings.gates["requests"].min or 0
            if metrics.canary.requests < need:
                record["passed"] = False
                record["not_enough_traffic"] = (f"not enough traffic: {metrics.canary.requests:.0f} of {need:g} "
                                                f"requests in {seconds:.0f} s")
                run.failure = f"{where} ({share_pct} %) {record['not_enough_traffic']}"
                progress(f"{where}: NOT JUDGED: {record['not_enough_traffic']} (the canary's gates need that many; "
                         "send production traffic, e.g. `shipyard promote --traffic RPS`)")
                break
            failed = [g for g in gates if not g.passed]
            record["passed"] = not failed
            progress(f"{where}: {'passed' if not failed else 'FAILED'}: {_summary(measured) or 'no traffic'}")
            if failed:
                run.failure = f"{where} ({share_pct} %) failed: " + "; ".join(
                    f"{g.metric} {g.reason}" for g in failed)
                break
    except (Exception, KeyboardInterrupt) as exc:  # the canary must not outlive its promotion
        run.interrupted = isinstance(exc, KeyboardInterrupt)
        run.failure = "interrupted (Ctrl-C)" if run.interrupted else f"{exc.__class__.__name__}: {exc}"
        progress(f"canary stopped: {run.failure}")
    if not run.passed:
        canary.remove(progress)
    return run
