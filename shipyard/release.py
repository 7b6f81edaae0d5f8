"""Promotion, rollback and history: move to production exactly what was verified in staging,
only if it passed, and be able to explain and undo it.

The subject is what an environment runs: an image digest on Kubernetes, a Bento on the local
target. A promotion deploys the very subject the verdict names (through the deploy step), runs
the target environment's post-deploy suites, rolls back by itself when they fail, and records a
release either way. Records and the lock live with the environment (ConfigMaps and a Lease in the
namespace, or the state folder locally) so two release managers see the same history.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from shipyard.config import Environment, load_environment
from shipyard.evidence import ReleaseRecord, Verdict, VerdictRef, read_all
from shipyard.harness.verdict import now

LOCK = "promotion"


class PromotionRefused(Exception):
    """A rule forbids this promotion; the message says which and what to run (exit code 1)."""


@dataclass
class Outcome:
    release: dict[str, Any]
    rollback: dict[str, Any] | None
    plan: list[str]

    @property
    def ok(self) -> bool:
        return self.release.get("outcome") in ("succeeded", "planned")


class PromotionLockLost(Exception):
    """The promotion lock stopped being ours while the promotion ran (its renewals failed past the
    renew deadline, or another manager holds it): the promotion stops where it is."""


@contextmanager
def _locked(target, env_name: str, wait_s: float = 0) -> Iterator[None]:
    """The environment's promotion lock for the duration of a release, or PromotionRefused.

    The lock is renewed while the release runs (a Lease on Kubernetes); if it is lost, the main
    thread gets PromotionLockLost at once, even inside a blocking call (a rollout wait), through a
    signal: the lock runs out a third of its duration later, so nobody else can have started."""
    import signal
    import threading

    from shipyard.targets.lease import lease_duration_s

    holder = _who()
    duration = lease_duration_s()
    main = threading.current_thread() is threading.main_thread()
    lost: list[str] = []
    releasing = threading.Event()

    def on_lost(reason: str) -> None:  # on the renewing thread
        lost.append(reason)
        if main and not releasing.is_set():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def stop_here(signum, frame) -> None:
        if lost:
            raise PromotionLockLost(f"the promotion lock on {env_name} was lost: {lost[0]}")

    deadline = time.monotonic() + wait_s
    while (held := target.lock.acquire(LOCK, holder, duration, on_lost)) is not None and time.monotonic() < deadline:
        time.sleep(1)
    if held is not None:
        raise PromotionRefused(f"another promotion to {env_name} is in progress, held by {held}; wait for it to finish")
    previous = signal.signal(signal.SIGUSR1, stop_here) if main else None
    try:
        yield
    finally:
        releasing.set()
        target.lock.release(LOCK, holder)
        if main:
            signal.signal(signal.SIGUSR1, previous)


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


def releases(target) -> list[ReleaseRecord]:
    """The environment's release records, oldest first, each validated against its schema."""
    return sorted(read_all(ReleaseRecord, target.records.list("release")), key=lambda r: r.seq)


def _record(target, env: Environment, kind: str, subject: str, previous: str, verdict: Verdict | None,
            outcome: str, checks: list[dict], approved: bool | None, note: str = "",
            canary: dict[str, Any] | None = None) -> dict[str, Any]:
    history = releases(target)  # one read: on Kubernetes each is an API call
    sub = verdict.subject if verdict else {}
    record = ReleaseRecord(
        seq=history[-1].seq + 1 if history else 1, environment=env.name, kind=kind, subject=subject,
        previous=previous, model_version=sub.get("model_version") or "",
        training_data_hash=sub.get("training_data_hash") or "",
        verdict=VerdictRef(record=verdict.record, environment=verdict.environment, finished_at=verdict.finished_at,
                           passed=verdict.passed) if verdict else None,
        post_deploy=checks, approved=approved, by=_who(), at=now(), outcome=outcome, note=note, canary=canary)
    doc = record.document()
    doc["record"] = target.records.put("release", f"{record.seq:05d}", doc)
    return doc


def _post_deploy(env: Environment, target_kind: str | None, suites: list[str],
                 progress: Callable[[str], None]) -> dict[str, Any]:
    from shipyard.harness.run import verify

    verdict, _ = verify(env, suites, target_kind, progress=progress)
    return {"suites": suites, "passed": verdict.passed, "record": verdict.record,
            "failed_gates": [f"{g.suite}.{g.metric}: {g.reason}" for g in verdict.gates if not g.passed]}


def _walk_with_traffic(canary, dst: Environment, subject: str, settings, progress: Callable[[str], None],
                       watch: bool, traffic_rps: float | None):
    """The canary's steps, with production traffic from a pod in its namespace for exactly as long
    as they run when `traffic_rps` is given (no clock racing the steps); the sender's summary, or
    None without it."""
    from shipyard.canary import walk

    if not traffic_rps:
        return walk(canary, subject, settings, progress, watch), None
    from shipyard.cluster import ClusterError
    from shipyard.targets import TargetError
    from shipyard.traffic import MAX_DURATION_S, KubernetesTraffic

    # Bounded all the same: every step's pause, wait for traffic and pod readiness, then some.
    bound = min(MAX_DURATION_S, len(settings.steps) * (settings.pause_s + settings.max_wait_s + 330) + 120)
    sender = KubernetesTraffic(dst, traffic_rps, bound)
    sender.start(progress)
    try:
        sender.wait_sending(progress)
        run = walk(canary, subject, settings, progress, watch)
        try:
            return run, sender.stop(progress)
        except (TargetError, ClusterError) as exc:  # the steps' outcome stands; only the sender's account is missing
            progress(f"traffic: no summary from job/{sender.name}: {exc}")
            return run, {"error": str(exc)}
    finally:
        sender.remove()


def promote(source: str, destination: str | None, target_kind: str | None = None, dry_run: bool = False,
            approve: bool = False, progress: Callable[[str], None] = lambda _: None,
            strategy: str | None = None, watch: bool = False, traffic_rps: float | None = None) -> Outcome:
    from shipyard.paths import environments_dir
    from shipyard.policy import PromotionFacts, refusal
    from shipyard.targets import target_for

    src = load_environment(source)
    if src.promotion is None:
        raise PromotionRefused(refusal(PromotionFacts(src, destination or "", "")) or "")
    dst_name = destination or src.promotion.to
    if dst_name != src.promotion.to:
        raise PromotionRefused(refusal(PromotionFacts(src, dst_name, "")) or "")
    dst = load_environment(dst_name)
    src_target, dst_target = target_for(src, target_kind), target_for(dst, target_kind)
    strategy = strategy or src.promotion.strategy
    if strategy == "canary" and src.promotion.canary is None:
        raise PromotionRefused(f"a canary needs settings: add `canary:` (steps, pause_s, gates) to {source}'s "
                               "promotion section in its environment.yaml")
    if strategy == "canary" and dst_target.canary is None:
        raise PromotionRefused(f"a canary needs the kubernetes target: {dst_name} runs one local server here, so there "
                               "is nothing to split its traffic with; promote with `--target kubernetes`, or replace "
                               "it at once with `--strategy replace`")
    if traffic_rps and strategy != "canary":
        raise PromotionRefused("--traffic sends production traffic while a canary's steps are judged: it needs "
                               f"strategy canary ({source}'s promotion.strategy is {strategy}; add --strategy canary)")
    subject = src_target.subject()
    facts = PromotionFacts(src, dst_name, subject, approved=approve, dry_run=dry_run)
    if subject:
        status = src_target.status()
        facts = PromotionFacts(src, dst_name, subject, status.state, status.problems,
                               read_all(Verdict, src_target.records.list("verdict")), approved=approve,
                               dry_run=dry_run)
    if refusal(facts) is None and src.parity and all(
            (environments_dir() / e / "kustomization.yaml").is_file() for e in (source, dst_name)):
        from shipyard.manifests import parity

        breaks = [f"{d.obj} {d.path}" for d in parity(src, dst, src.parity.allow) if not d.allowed]
        facts = PromotionFacts(src, dst_name, subject, facts.source_state, facts.source_problems, facts.verdicts,
                               breaks, approve, dry_run)
    refused = refusal(facts)
    if refused:
        raise PromotionRefused(refused)
    verdict = facts.verdicts[-1]

    previous = dst_target.subject()
    plan = [f"from {source}: {subject}", f"to {dst_name}: {previous or '(nothing running)'} -> {subject}",
            f"verdict of {verdict.finished_at} ({verdict.record}): "
            + ", ".join(f"{g.suite}.{g.metric}={g.measured:g}" for g in verdict.gates if g.measured is not None),
            f"post-deploy suites in {dst_name}: {', '.join(src.promotion.post_deploy_suites)}",
            _strategy_line(strategy, src.promotion.canary, bool(previous))]
    if dry_run:
        return Outcome({"outcome": "planned"}, None, plan)

    with _locked(dst_target, dst_name):
        from shipyard.targets import TargetError

        from shipyard.harness.run import VerifyError

        canary_doc = None
        if strategy == "canary" and previous:
            settings = src.promotion.canary
            canary = dst_target.canary
            leftover = canary.subject()
            if leftover:
                progress(f"a canary of {leftover} is left in {dst_name} by a promotion that no longer runs")
                canary.remove(progress)
            run, traffic = _walk_with_traffic(canary, dst, subject, settings, progress, watch, traffic_rps)
            canary_doc = {"pause_s": settings.pause_s, "max_wait_s": settings.max_wait_s, "steps": run.steps,
                          "traffic": traffic}
            if not run.passed:
                aborted = _record(dst_target, dst, "promote", subject, previous, verdict, "aborted", [],
                                  approve or None, note=f"canary {run.failure}; {dst_name} stays on {previous}",
                                  canary=canary_doc)
                if run.interrupted:
                    raise KeyboardInterrupt
                return Outcome(aborted, None, plan)
            progress(f"every canary step passed: {subject} replaces stable in {dst_name}")
        elif strategy == "canary":
            progress(f"nothing runs in {dst_name} yet: the first release replaces, there is no stable to compare a "
                     "canary with" + (" (and no traffic is sent)" if traffic_rps else ""))
        progress(f"deploying {subject} to {dst_name}")
        try:
            try:
                dst_target.roll_to(subject, progress)
            finally:
                if canary_doc is not None:  # stable now serves the digest (or failed to): the canary goes
                    dst_target.canary.remove(progress)
            check = _post_deploy(dst, target_kind, src.promotion.post_deploy_suites, progress)
        except (TargetError, VerifyError) as exc:  # the deploy itself failed: treated like a failed check
            check = {"suites": [], "passed": False, "record": "", "failed_gates": [f"deploy: {exc}"]}
        except PromotionLockLost as exc:  # stopped mid-deploy: say so; no rollback without the lock
            progress(str(exc))
            return Outcome(_record(dst_target, dst, "promote", subject, previous, verdict, "aborted", [],
                                   approve or None, note=f"{exc}; stopped while deploying, {dst_name} may run "
                                   f"either {previous or 'nothing'} or {subject}: check `shipyard status {dst_name}`",
                                   canary=canary_doc), None, plan)
        if check["passed"]:
            return Outcome(_record(dst_target, dst, "promote", subject, previous, verdict, "succeeded", [check],
                                   approve or None, canary=canary_doc), None, plan)
        cause = "; ".join(check["failed_gates"]) or "a post-deploy suite did not pass"
        failed = _record(dst_target, dst, "promote", subject, previous, verdict,
                         "rolled-back" if previous else "failed", [check], approve or None,
                         note="post-deploy check failed: " + cause, canary=canary_doc)
        # The cause first: the rollback's own progress would otherwise bury it.
        progress(f"post-deploy check failed in {dst_name}: {cause}")
        if not previous:
            return Outcome(failed, None, plan)
        progress(f"rolling {dst_name} back to {previous}")
        dst_target.roll_to(previous, progress)
        recheck = _post_deploy(dst, target_kind, src.promotion.post_deploy_suites, progress)
        back = _record(dst_target, dst, "auto-rollback", previous, subject, None,
                       "succeeded" if recheck["passed"] else "failed", [recheck], None,
                       note=f"after release {failed['seq']} failed its post-deploy check")
        return Outcome(failed, back, plan)


def rollback(env_name: str, to_seq: int | None = None, target_kind: str | None = None,
             progress: Callable[[str], None] = lambda _: None) -> Outcome:
    """Back to the previous release's subject (or release N's), checked like a promotion."""
    from shipyard.targets import target_for

    env = load_environment(env_name)
    target = target_for(env, target_kind)
    canary = target.canary
    if canary is not None and canary.current() is not None:
        return _abort_canary(target, env, canary, target_kind, progress)
    history = releases(target)
    current = target.subject()
    if to_seq is not None:
        chosen = next((r for r in history if r.seq == to_seq), None)
        if chosen is None:
            raise PromotionRefused(f"{env_name} has no release {to_seq}: see `shipyard history {env_name}`")
    else:
        chosen = next((r for r in reversed(history) if r.subject != current and r.outcome == "succeeded"), None)
        if chosen is None:
            raise PromotionRefused(f"{env_name} has no earlier successful release to roll back to")
    with _locked(target, env_name):
        progress(f"rolling {env_name} back to release {chosen.seq}: {chosen.subject}")
        target.roll_to(chosen.subject, progress)
        suites = ["smoke"]
        check = _post_deploy(env, target_kind, suites, progress)
        doc = _record(target, env, "rollback", chosen.subject, current, None,
                      "succeeded" if check["passed"] else "failed", [check], None, note=f"to release {chosen.seq}")
        return Outcome(doc, None, [])


def _abort_canary(target, env: Environment, canary, target_kind: str | None,
                  progress: Callable[[str], None]) -> Outcome:
    """`shipyard rollback` while a canary runs: the promotion walking it is asked to abort (it
    removes the canary and records the abort), then stable is checked and the rollback recorded.
    A canary nobody walks any more (its promotion was killed) is removed here, under the lock."""
    subject = canary.subject()
    progress(f"a canary of {subject} is in progress in {env.name}: asking its promotion to abort it")
    canary.request_abort(_who())
    canary.wait_removed(60)  # by the promotion walking it, if one still does
    with _locked(target, env.name, wait_s=60):
        if canary.current() is not None:
            progress("no promotion is walking it any more: removing it here")
            canary.remove(progress)
        stable = target.subject()
        progress(f"{env.name} keeps serving {stable}")
        check = _post_deploy(env, target_kind, ["smoke"], progress)
        doc = _record(target, env, "rollback", stable, subject, None, "succeeded" if check["passed"] else "failed",
                      [check], None, note=f"aborted the canary of {subject}")
        return Outcome(doc, None, [])


def _strategy_line(strategy: str, settings, has_stable: bool) -> str:
    if strategy != "canary" or settings is None:
        return "strategy: replace (a rolling update, then the post-deploy suites)"
    if not has_stable:
        return "strategy: canary, but nothing runs there yet: the first release replaces"
    gates = ", ".join(f"{m}" + (f">={b.min:g}" if b.min is not None else "") + (f"<={b.max:g}" if b.max is not None else "")
                      for m, b in settings.gates.items())
    return ("strategy: canary, " + " -> ".join(f"{p} %" for p in settings.steps)
            + f" -> replace, {settings.pause_s:g} s per step; each step: {gates}")
