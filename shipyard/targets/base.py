"""What every target offers the pipeline: the typed seam between the release steps and where an
environment runs. The local and the Kubernetes targets implement it in their own modules."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from shipyard.config import Environment

Progress = Callable[[str], None]


class TargetError(Exception):
    """The target could not do what was asked; the CLI maps it to exit code 1."""


@dataclass(frozen=True)
class Status:
    environment: str
    target: str
    state: str  # local: ready | starting | stopped | dead; kubernetes: ready | absent | not ready: ...
    bento: str = ""
    model: str = ""
    url: str = ""
    pid: int | None = None
    started_at: str = ""
    image: str = ""
    # kubernetes: every workload of the release that is not ready, with its reason
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """Where suites send traffic, and what they are judging (recorded in the verdict)."""

    url: str
    subject: dict[str, str] = field(default_factory=dict)


class Records(Protocol):
    """Evidence kept with the environment it is about: verdicts and releases."""

    def location(self, kind: str, name: str) -> str: ...
    def put(self, kind: str, name: str, doc: dict) -> str: ...
    def list(self, kind: str) -> list[dict]: ...


class Lock(Protocol):
    """One release manager at a time per environment. acquire takes the lock (None) or names its
    holder; a lock that can be lost while held (a Lease whose renewals fail) calls on_lost(reason)
    from another thread."""

    def acquire(self, name: str, holder: str, ttl_s: float,
                on_lost: Callable[[str], None] = ...) -> str | None: ...
    def release(self, name: str, holder: str) -> None: ...


class SuiteRunner(Protocol):
    """Runs the staged suites against an environment: from this host (HostRunner) or as pods in
    its namespace (PodRunner)."""

    url: str  # where the suites send their requests
    subject: dict[str, str]  # what they judge, recorded in the verdict

    def where(self, workers: int = 0) -> str: ...
    def run(self, project: Any, suite: str, settings: dict[str, Any], context: dict[str, str],
            progress: Progress) -> Any: ...


class Canary(Protocol):
    """A second track of the environment's workload beside its stable one, for canary promotions:
    created at a share of the pods, judged on both tracks' /metrics, aborted on request, removed."""

    def current(self) -> dict | None: ...  # the canary's workload while one runs, else None
    def subject(self) -> str: ...
    def stable_replicas(self) -> int: ...
    def set(self, subject: str, replicas: int, progress: Progress, timeout_s: float = ...) -> None: ...
    def remove(self, progress: Progress, timeout_s: float = ...) -> None: ...
    def request_abort(self, who: str) -> bool: ...
    def wait_removed(self, timeout_s: float) -> bool: ...
    def abort_requested(self) -> str: ...
    def scrape(self) -> dict[str, dict[str, str]]: ...


class Target(Protocol):
    env: Environment
    records: Records
    lock: Lock
    # The environment's canary track, or None where there is nothing to split traffic with (one
    # local server): a canary promotion there is refused.
    canary: Canary | None

    def status(self) -> Status: ...
    def subject(self) -> str: ...
    def roll_to(self, subject: str, progress: Progress = ...) -> None: ...
    # What runs the staged suites against the environment, once it is ready.
    def suite_runner(self) -> AbstractContextManager[SuiteRunner]: ...
    # What the autoscaler did while a suite ran (a ScaleWatch), or None where nothing scales.
    def scale_watch(self) -> AbstractContextManager[object | None]: ...
