"""Promotion policy without servers: what is refused, and what the release manager reads first.

A stand-in target replaces the cluster here only to provoke failures (a workload that never
becomes ready) that take minutes to provoke for real; tests/integration/test_deploy.py shows the
real target reporting the same failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipyard import release
from shipyard.harness.verdict import now
from shipyard.targets import Status, TargetError

VERIFIED = "registry/app@sha256:" + "a" * 64
PREVIOUS = "registry/app@sha256:" + "b" * 64


@dataclass
class StandInTarget:
    """Records, a lock and a subject in memory; roll_to fails for the subjects in `fails`."""

    name: str
    subject_now: str
    state: str = "ready"
    problems: tuple[str, ...] = ()
    fails: dict[str, str] = field(default_factory=dict)
    kept: dict[str, list[dict]] = field(default_factory=dict)
    canary: None = None  # a replace promotion: no canary track

    def __post_init__(self) -> None:
        self.records, self.lock = self, self

    def subject(self) -> str:
        return self.subject_now

    def status(self) -> Status:
        return Status(self.name, "kubernetes", self.state, image=self.subject_now, problems=self.problems)

    def roll_to(self, subject: str, progress) -> None:
        if subject in self.fails:
            raise TargetError(self.fails[subject])
        self.subject_now = subject

    # records and lock, in memory
    def list(self, kind: str) -> list[dict]:
        return self.kept.get(kind, [])

    def put(self, kind: str, name: str, doc: dict) -> str:
        self.kept.setdefault(kind, []).append(doc)
        return f"{kind}/{name}"

    def acquire(self, name: str, holder: str, ttl_s: float, on_lost=None) -> str | None:
        return None

    def release(self, name: str, holder: str) -> None:
        pass


@pytest.fixture
def envs(tmp_path: Path, monkeypatch) -> Path:
    for name, extra in (("staging", "promotion: {to: production, requires_approval: false, post_deploy_suites: []}\n"
                                    "gates: {smoke: {failed: {max: 0}}}\n"),
                        ("production", "")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "environment.yaml").write_text(
            f"name: {name}\ntarget: kubernetes\nnamespace: app-{name}\n{extra}")
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", str(tmp_path))
    return tmp_path


def _verdict(subject: str) -> dict:
    return {"subject": {"image": subject}, "suites": [{"name": "smoke", "status": "passed"}], "gates": [],
            "passed": True, "started_at": now(), "finished_at": now(), "environment": "staging",
            "target": "kubernetes", "record": "verdict/1"}


def _targets(monkeypatch, staging: StandInTarget, production: StandInTarget) -> None:
    import shipyard.targets

    monkeypatch.setattr(shipyard.targets, "target_for", lambda env, kind=None: staging if env.name == "staging" else production)


def test_a_source_with_a_workload_not_ready_is_refused_naming_it(envs, monkeypatch):
    staging = StandInTarget("staging", VERIFIED, state="not ready: stream-worker 0/2 ready",
                            problems=("deployment/stream-worker: 0/2 ready, stream-worker-1: CrashLoopBackOff",),
                            kept={"verdict": [_verdict(VERIFIED)]})
    _targets(monkeypatch, staging, StandInTarget("production", PREVIOUS))
    with pytest.raises(release.PromotionRefused, match=r"staging is not ready.*deployment/stream-worker.*CrashLoopBackOff"):
        release.promote("staging", None, "kubernetes")


def test_a_failed_deploy_names_the_failing_workload_before_rolling_back(envs, monkeypatch):
    cause = "deployment/stream-worker in app-production did not become ready: 0/2 ready, w-1: CrashLoopBackOff"
    staging = StandInTarget("staging", VERIFIED, kept={"verdict": [_verdict(VERIFIED)]})
    production = StandInTarget("production", PREVIOUS, fails={VERIFIED: cause})
    _targets(monkeypatch, staging, production)
    monkeypatch.setattr(release, "_post_deploy", lambda *a, **k: {"suites": [], "passed": True, "record": "",
                                                                   "failed_gates": []})
    said: list[str] = []
    outcome = release.promote("staging", None, "kubernetes", progress=said.append)
    assert not outcome.ok and outcome.release["outcome"] == "rolled-back"
    failed_at = next(i for i, line in enumerate(said) if "post-deploy check failed" in line)
    rolling_at = next(i for i, line in enumerate(said) if line.startswith("rolling production back"))
    assert failed_at < rolling_at and "deployment/stream-worker" in said[failed_at]
    assert "deployment/stream-worker" in outcome.release["note"]
    assert production.subject_now == PREVIOUS and outcome.rollback["outcome"] == "succeeded"
