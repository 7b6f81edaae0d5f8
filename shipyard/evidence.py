"""The evidence shipyard keeps beside each environment, as one schema each: a verdict (what a
verification judged, for which exact subject) and a release record (what a promotion or rollback
did, on which verdict). Written from these models and validated again when read back, because a
record read back may come from a ConfigMap anyone with access to the namespace can edit, or from
an older shipyard: a promotion must not be allowed, or a history shown, on a record that says
something else than it seems to. Fields a newer shipyard adds are kept (extra="allow").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def document(self) -> dict[str, Any]:
        """As stored and printed by `-o json`: the schema's own field names."""
        return self.model_dump(by_alias=True, mode="json")


class SuiteOutcome(_Record):
    name: str
    status: Literal["passed", "failed", "error"]
    seconds: float = 0.0
    metrics: dict[str, Any] = Field(default_factory=dict)
    failures: list[Any] = Field(default_factory=list)

    @property
    def inconclusive(self) -> str:
        """Why the suite's measurements say nothing (a stress run that could not overload), kept
        only where there is a reason (verdicts before it have none): its gates read it as their
        missing data."""
        return str((self.model_extra or {}).get("inconclusive") or "")


class GateOutcome(_Record):
    suite: str
    metric: str
    min: float | None = None
    max: float | None = None
    measured: float | None = None
    passed: bool
    reason: str = ""


class Verdict(_Record):
    schema_: str = Field("shipyard.dev/verdict/v1", alias="schema")
    environment: str
    target: str
    subject: dict[str, Any]  # image and digest on Kubernetes, bento locally; model_version, training_data_hash
    passed: bool
    suites: list[SuiteOutcome]
    not_run: list[str] = Field(default_factory=list)
    not_exercised: list[str] = Field(default_factory=list)
    gates: list[GateOutcome]
    started_at: str
    finished_at: str
    host: str = ""
    user: str = ""
    record: str = ""  # where it is kept (a ConfigMap, or a file)
    generated_from: dict[str, str] = Field(default_factory=dict)

    def judges(self, subject: str) -> bool:
        """Whether this verdict is about `subject` (an image reference, or a Bento tag)."""
        return subject in (self.subject.get("image"), self.subject.get("bento"))

    @property
    def verified(self) -> str:
        return self.subject.get("image") or self.subject.get("bento") or ""


class VerdictRef(_Record):
    """The verdict a promotion relied on, as its release record names it."""

    record: str = ""
    environment: str
    finished_at: str
    passed: bool


class ReleaseRecord(_Record):
    seq: int = Field(ge=1)
    environment: str
    kind: Literal["promote", "rollback", "auto-rollback"]
    subject: str
    previous: str = ""
    model_version: str = ""
    training_data_hash: str = ""
    verdict: VerdictRef | None = None
    post_deploy: list[dict[str, Any]] = Field(default_factory=list)
    approved: bool | None = None
    by: str
    at: str
    outcome: Literal["succeeded", "failed", "rolled-back", "aborted", "planned"]
    note: str = ""
    canary: dict[str, Any] | None = None
    record: str = ""


class RecordError(Exception):
    """A kept record does not have its kind's schema: the CLI names it and what to do (exit code 1)."""


def read(model: type[_Record], doc: dict[str, Any]) -> Any:
    """`doc` as a `model`, or a RecordError naming the record, the fields and the rule each broke."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        where = doc.get("record") or "a record without a location"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in exc.errors())
        raise RecordError(f"{where} is not a valid {model.__name__} ({problems}): it was changed by hand or by "
                          "another tool; restore it, or delete it to drop it from the evidence") from None


def read_all(model: type[_Record], docs: list[dict[str, Any]]) -> list[Any]:
    return [read(model, doc) for doc in docs]
