"""The release policy: when a promotion is refused, and what the refusal says to do.

A pure function of facts already gathered (what runs where, its verdict, parity, approval), so
every rule is unit-tested without a server and reads as one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from shipyard.config import Environment
from shipyard.evidence import Verdict


@dataclass(frozen=True)
class PromotionFacts:
    source: Environment
    destination: str  # as asked for ("" = the source's promotion.to)
    subject: str  # what the source runs ("" = nothing)
    source_state: str = "ready"
    source_problems: tuple[str, ...] = ()
    verdicts: list[Verdict] = field(default_factory=list)  # the source's, oldest first
    parity_breaks: list[str] = field(default_factory=list)  # "<object> <path>" outside parity.allow
    approved: bool = False
    dry_run: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def refusal(f: PromotionFacts) -> str | None:
    """Why this promotion may not happen, naming the fix; None when every rule allows it."""
    src, name = f.source, f.source.name
    if src.promotion is None:
        return f"{name} has no promotion section in its environment.yaml: nothing may be promoted from it"
    if f.destination and f.destination != src.promotion.to:
        return f"{name} promotes to {src.promotion.to}, not {f.destination} (promotion.to)"
    if not f.subject:
        return f"nothing is running in {name}: deploy and verify it first"
    if f.source_state != "ready":
        return (f"{name} is {f.source_state}: " + "; ".join(f.source_problems or (f.source_state,))
                + f"; fix it and run `shipyard deploy {name}` and `shipyard verify {name}` again")
    if not f.verdicts:
        return f"no verdict for {name}: run `shipyard verify {name}`"
    verdict = f.verdicts[-1]
    if not verdict.judges(f.subject):
        return (f"the latest verdict of {name} is for {verdict.verified}, but {name} now runs {f.subject}: "
                f"it changed since it was verified; run `shipyard verify {name}`")
    judged = {s.name for s in verdict.suites}
    missing = [suite for suite in src.gates if suite not in judged]
    if missing:
        return (f"the verdict for {f.subject} did not run {', '.join(missing)}, which {name} gates: "
                f"run `shipyard verify {name}` with every suite")
    if not verdict.passed:
        failed = [f"{g.suite}.{g.metric} ({g.reason})" for g in verdict.gates if not g.passed]
        return (f"the verdict for {f.subject} failed: {', '.join(failed) or 'a suite did not pass'}; "
                "fix it, redeploy and verify again")
    age_h = (f.now - datetime.fromisoformat(verdict.finished_at)).total_seconds() / 3600
    if age_h > src.promotion.max_verdict_age_h:
        return (f"the verdict is {age_h:.1f} h old (promotion.max_verdict_age_h is "
                f"{src.promotion.max_verdict_age_h:g}): run `shipyard verify {name}` again")
    if f.parity_breaks:
        return (f"{name} and {src.promotion.to} differ outside parity.allow ({f.parity_breaks[0]}): "
                f"see `shipyard diff {name} {src.promotion.to}`")
    if src.promotion.requires_approval and not f.approved and not f.dry_run:
        return (f"promotion to {src.promotion.to} requires approval (the user acceptance sign-off): "
                "re-run with --approve once the verdict and report were reviewed")
    return None
