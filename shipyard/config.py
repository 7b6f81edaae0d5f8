"""environments/<name>/environment.yaml, validated.

Everything about an environment that is not Kubernetes YAML lives in that file: where it runs,
what "good" means there (gates), and what may differ from its sibling. pydantic validates it so a
typo is an error naming the key and the rule, not a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shipyard.paths import environments_dir
from shipyard.project import NAME_PATTERN, Project, current_project, read_yaml_model

_CLOSED = ConfigDict(extra="forbid")
# Locust worker pods one load suite may get on the kubernetes target (suites.<suite>.workers).
MAX_LOCUST_WORKERS = 32
# A suite's name: a built-in one or one the project declares in shipyard.yaml (checked on load).
Suite = Annotated[str, Field(pattern=NAME_PATTERN)]


class ConfigError(Exception):
    """A missing or invalid environment definition; the CLI maps it to exit code 2."""


class Bound(BaseModel):
    """A gate threshold: `{min: x}`, `{max: y}` or both."""

    model_config = _CLOSED
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> "Bound":
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class LocalSettings(BaseModel):
    model_config = _CLOSED
    port: Annotated[int, Field(ge=1024, le=65535)] = 3000
    ready_timeout_s: Annotated[float, Field(gt=0, le=600)] = 90
    workers: Annotated[int, Field(ge=1, le=64)] = 1


class Parity(BaseModel):
    model_config = _CLOSED
    with_: Annotated[str, Field(alias="with", pattern=NAME_PATTERN)]
    allow: list[str] = []


# What a canary step is judged on, each measured from production's own Prometheus metrics over
# the step (shipyard/analysis.py says how). Ratios compare the canary with the stable version.
CanaryMetric = Literal["requests", "error_rate", "error_rate_increase", "p99_ms", "p99_ratio",
                       "decision_rate", "decision_rate_shift", "stable_error_rate"]


class DecisionMetric(BaseModel):
    """The model's decision counter, so a canary whose decisions drift is caught: the Prometheus
    counter, its label, and the label value whose share is compared (e.g. the fraud share)."""

    model_config = _CLOSED
    metric: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    label: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
    value: Annotated[str, Field(min_length=1)]


class Canary(BaseModel):
    """Progressive delivery: the new digest serves a growing share of production's traffic, each
    step judged on production's metrics before the next; the last step replaces stable."""

    model_config = _CLOSED
    # Shares of production's endpoints the canary gets, in order; after the last, the new digest
    # replaces stable. Realised by replica counts, so the share is as close as whole pods allow.
    steps: Annotated[list[Annotated[int, Field(ge=1, le=99)]], Field(min_length=1, max_length=10)]
    pause_s: Annotated[float, Field(ge=5, le=600)] = 30
    # A step whose canary has not yet answered `requests.min` after pause_s keeps watching, up to
    # this much longer (Argo's inconclusive analysis), before it fails for want of traffic: quiet
    # hours are not a broken canary, and a step judged on nothing proves nothing.
    max_wait_s: Annotated[float, Field(ge=0, le=600)] = 60
    decision: DecisionMetric | None = None
    gates: Annotated[dict[CanaryMetric, Bound], Field(min_length=1)]

    @model_validator(mode="after")
    def _sound(self) -> "Canary":
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps must grow, step by step (got {self.steps})")
        if {"decision_rate", "decision_rate_shift"} & set(self.gates) and self.decision is None:
            raise ValueError("a decision_rate gate needs `decision: {metric, label, value}` to know what to count")
        if "requests" not in self.gates:
            raise ValueError("gates need `requests: {min: N}`: a step that saw too little traffic must not pass")
        if len(self.steps) * (self.pause_s + self.max_wait_s) > 1200:
            raise ValueError(f"{len(self.steps)} steps of up to {self.pause_s:g} + {self.max_wait_s:g} s (pause_s + "
                             "max_wait_s) exceed the 1200 s a promotion may hold production's lock; use fewer steps, a "
                             "shorter pause or a shorter max_wait_s")
        return self


class Promotion(BaseModel):
    model_config = _CLOSED
    to: Annotated[str, Field(pattern=NAME_PATTERN)]
    requires_approval: bool = True
    max_verdict_age_h: Annotated[float, Field(gt=0)] = 24
    post_deploy_suites: list[Suite] = ["smoke"]
    # replace: the verified digest replaces production at once (a rolling update); canary: step by
    # step, as `canary` says (Kubernetes only).
    strategy: Literal["replace", "canary"] = "replace"
    canary: Canary | None = None

    @model_validator(mode="after")
    def _canary_settings(self) -> "Promotion":
        if self.strategy == "canary" and self.canary is None:
            raise ValueError("strategy canary needs a `canary:` section (steps, pause_s, gates)")
        return self


class BatchSettings(BaseModel):
    """`shipyard batch --target kubernetes` in this environment: how many shards an input is
    split into, how many run at once, and how often a failed shard is retried."""

    model_config = _CLOSED
    shards: Annotated[int, Field(ge=1, le=100)] = 4
    parallelism: Annotated[int, Field(ge=1, le=100)] = 4
    retries_per_shard: Annotated[int, Field(ge=0, le=10)] = 2


class Environment(BaseModel):
    """One environment. Only `name` is required; everything else has a working default."""

    model_config = _CLOSED
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=40)]
    target: Literal["local", "kubernetes"] = "local"
    namespace: Annotated[str | None, Field(pattern=NAME_PATTERN, max_length=63)] = None
    local: LocalSettings = LocalSettings()
    # The representative sample acceptance judges the model on: relative to the state folder
    # (`shipyard train` writes data/sample.csv there), or absolute.
    data_sample: str | None = None
    deadline_ms: Annotated[float, Field(gt=0, le=60_000)] = 100
    parity: Parity | None = None
    suites: dict[Suite, dict[str, float | int | str]] = {}
    gates: dict[Suite, dict[str, Bound]] = {}
    promotion: Promotion | None = None
    batch: BatchSettings = BatchSettings()

    @field_validator("suites")
    @classmethod
    def _locust_workers(cls, suites: dict[str, dict[str, float | int | str]]) -> dict[str, dict[str, float | int | str]]:
        """`workers`: how many locust worker pods a load suite gets on the kubernetes target."""
        for suite, settings in suites.items():
            workers = settings.get("workers", 1)
            if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_LOCUST_WORKERS:
                raise ValueError(f"suites.{suite}.workers must be a whole number from 1 to {MAX_LOCUST_WORKERS} "
                                 f"(got {workers!r})")
        return suites

    @field_validator("suites")
    @classmethod
    def _stress_settings(cls, suites: dict[str, dict[str, float | int | str]]) -> dict[str, dict[str, float | int | str]]:
        """The stress suite's settings by name: a misspelt or retired one (the locust-era
        `start_users`, `workers`, ...) would otherwise be ignored without a word."""
        from shipyard.harness.stress import SETTINGS

        for name, value in (suites.get("stress") or {}).items():
            if name not in SETTINGS:
                raise ValueError(f"suites.stress.{name}: not a stress setting; the stress suite offers requests per "
                                 f"second, open loop, and takes {', '.join(SETTINGS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"suites.stress.{name} must be a number above 0 (got {value!r})")
        return suites

    @model_validator(mode="after")
    def _namespace_for_kubernetes(self) -> "Environment":
        if self.target == "kubernetes" and not self.namespace:
            raise ValueError("target kubernetes needs a namespace")
        return self


def environment_file(name: str) -> Path:
    return environments_dir() / name / "environment.yaml"


def known_environments() -> list[str]:
    root = environments_dir()
    return sorted(p.parent.name for p in root.glob("*/environment.yaml")) if root.is_dir() else []


def _unknown_suites(env: Environment, project: Project) -> list[str]:
    known = set(project.suite_names)
    named = [("suites", s) for s in env.suites] + [("gates", s) for s in env.gates]
    named += [("promotion.post_deploy_suites", s) for s in (env.promotion.post_deploy_suites if env.promotion else [])]
    return [f"  {where}.{suite}: unknown suite; this project's suites are {', '.join(project.suite_names)}"
            for where, suite in named if suite not in known]


def load_environment(name: str, project: Project | None = None) -> Environment:
    """Reads and validates environments/<name>/environment.yaml; ConfigError says what is wrong."""
    path = environment_file(name)
    if not path.is_file():
        known = ", ".join(known_environments()) or "none"
        raise ConfigError(f"unknown environment {name!r}: {path} does not exist (known: {known})")
    env = read_yaml_model(path, Environment, ConfigError)
    if env.name != name:
        raise ConfigError(f"{path}: name: is {env.name!r} but the folder is {name!r}; they must match")
    unknown = _unknown_suites(env, project or current_project())
    if unknown:
        raise ConfigError(f"{path} is invalid:\n" + "\n".join(unknown))
    return env
