"""A canary promotion's steps: grow the new digest's share of production step by step, judge each
step on production's own metrics, and abort at the first step that fails.

The caller (release.promote) holds the promotion lock throughout, records the outcome, and on
success replaces stable with the new digest; this module only walks the steps and, whatever
happens (a failed gate, a rollback's abort request, an error, Ctrl-C), leaves no canary behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from shipyard.analysis import StepMetrics, increase, judge_step, parse, replicas_for, total
from shipyard.config import Canary

WATCH_EVERY_S = 5.0


@dataclass
class CanaryRun:
    steps: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""  # why it stopped early ("" = every step passed)
    interrupted: bool = False  # by Ctrl-C: the caller records the abort, then lets it through

    @property
    def passed(self) -> bool:
        return not self.failure


def _measure(canary, settings: Canary, before: dict[str, dict[str, str]]) -> StepMetrics:
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


def walk(canary, subject: str, settings: Canary, progress: Callable[[str], None], watch: bool = False) -> CanaryRun:
    """Every step of settings.steps against `canary` (a KubernetesCanary), in order."""
    run = CanaryRun()
    stable = canary.stable_replicas()
    try:
        for number, share_pct in enumerate(settings.steps, start=1):
            pods, share = replicas_for(share_pct, stable)
            where = f"step {number}/{len(settings.steps)}"
            progress(f"{where}: {share_pct} % asked, {pods} canary : {stable} stable pods = {share:.0%} of "
                     f"production's endpoints, judged for {settings.pause_s:g} s")
            canary.set(subject, pods, progress)
            before = canary.scrape()
            started = time.monotonic()
            next_watch = started + WATCH_EVERY_S
            aborted_by = ""
            while (left := settings.pause_s - (time.monotonic() - started)) > 0:
                aborted_by = canary.abort_requested()
                if aborted_by:
                    break
                if watch and time.monotonic() >= next_watch:
                    progress(f"{where}: {_summary(_measure(canary, settings, before).measured())} so far")
                    next_watch += WATCH_EVERY_S
                time.sleep(min(1.0, left))
            metrics = _measure(canary, settings, before)
            measured = metrics.measured()
            gates = judge_step(settings, metrics)
            record = {"step": number, "share_asked_pct": share_pct, "canary_pods": pods, "stable_pods": stable,
                      "share": round(share, 4), "seconds": round(time.monotonic() - started, 1),
                      "measured": measured,
                      "gates": [{"metric": g.metric, "min": g.min, "max": g.max, "measured": g.measured,
                                 "passed": g.passed, "reason": g.reason} for g in gates]}
            run.steps.append(record)
            if aborted_by:
                run.failure = f"{where} ({share_pct} %) aborted by {aborted_by}"
                record["passed"], record["aborted_by"] = False, aborted_by
                progress(run.failure)
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
