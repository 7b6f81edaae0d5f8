"""`shipyard verify`: run the suites against an environment, judge its gates, store the verdict.

Smoke runs first and a failed smoke stops the run (nothing else can be trusted); every other
suite runs even when an earlier one failed, so the verdict shows everything that is wrong.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Callable

from shipyard.config import Environment
from shipyard.evidence import Verdict
from shipyard.harness import gates as gate_eval
from shipyard.harness import report, verdict as verdicts
from shipyard.harness.suites import SuiteResult
from shipyard.paths import state_dir
from shipyard.project import Project, current_project


# The suites under which the autoscaler is watched (on a target that scales).
SCALED = ("load", "stress")


class VerifyError(Exception):
    """The environment cannot be verified at all (not running, unknown suite): exit 1 or 2."""


def _context(project: Project, env: Environment, subject: dict[str, str]) -> dict[str, str]:
    """What every suite is told besides the URL: what should be running, and what to send."""
    context = {"SHIPYARD_EXPECTED_BENTO": subject.get("bento", ""),
               "SHIPYARD_EXPECTED_MODEL": subject.get("model_version", ""),
               "SHIPYARD_DEADLINE_MS": f"{env.deadline_ms:g}",
               "SHIPYARD_WEIGHTS": json.dumps(project.traffic.weights)}
    if project.traffic.samples:
        context["SHIPYARD_SAMPLES"] = str(project.path(project.traffic.samples))
    if env.data_sample:
        # Relative to the state folder, where the project's train hook writes it; or absolute.
        context["SHIPYARD_DATA_SAMPLE"] = str((state_dir() / env.data_sample).resolve())
    return context


def _data_hash(model_tag: str) -> dict[str, str]:
    """The training-data hash recorded with the model, when this machine's store has it."""
    try:
        import bentoml

        return {"training_data_hash": str(bentoml.models.get(model_tag).info.metadata["training_data_hash"])}
    except Exception:  # noqa: BLE001 - a model built elsewhere is still verifiable
        return {}


def verify(env: Environment, requested: list[str] | None = None, target_kind: str | None = None,
           overrides: dict[str, dict] | None = None, progress: Callable[[str], None] = lambda _: None) -> tuple[Verdict, Path]:
    """Runs the suites, evaluates the gates, stores verdict + report; returns (verdict, its path)."""
    from shipyard.targets import TargetError, target_for

    project = current_project()
    unknown = [s for s in requested or [] if s not in project.suite_names]
    if unknown:
        raise VerifyError(f"unknown suite {', '.join(unknown)}: this project's suites are {', '.join(project.suite_names)}")
    suites = [s for s in project.suite_names if s in (requested or project.suite_names)]
    started = verdicts.now()
    results: list[SuiteResult] = []
    target = target_for(env, target_kind)
    with ExitStack() as stack:
        try:
            runner = stack.enter_context(target.suite_runner())
        except TargetError as exc:
            raise VerifyError(str(exc)) from None
        subject = {**runner.subject, **_data_hash(runner.subject.get("model_version", ""))}
        context = _context(project, env, subject)
        for suite in suites:
            progress(f"{suite}: running against {runner.url}")
            configured = {**env.suites.get(suite, {}), **(overrides or {}).get(suite, {})}
            with target.scale_watch() if suite in SCALED else nullcontext() as scaling:
                try:
                    result = runner.run(project, suite, configured, context, progress)
                except TargetError as exc:  # the suite could not run at all: an error, the others still run
                    result = SuiteResult(suite, "error", 0.0, {}, {"output": str(exc)})
            if scaling is not None:  # what the autoscaler did meanwhile: figures to gate, rows to chart
                result.metrics.update(scaling.metrics())
                result.details["replicas"] = scaling.rows
            results.append(result)
            progress(f"{suite}: {result.status} in {result.seconds:.1f}s")
            if result.details.get("inconclusive"):
                progress(f"{suite}: inconclusive: {result.details['inconclusive']} (its gates have no data)")
            if suite == "smoke" and result.status != "passed":
                progress("smoke failed: stopping here, nothing else can be trusted")
                break
    measured = {r.name: r.metrics for r in results}
    judged = gate_eval.evaluate(env.gates, measured, {r.name for r in results if r.status != "error"}, suites,
                                {r.name: r.details["inconclusive"] for r in results if r.details.get("inconclusive")})
    document = verdicts.build(env.name, target_kind or env.target, subject, results, judged, started, suites)
    document["generated_from"] = {r.name: r.details["generator"] for r in results if r.details.get("generator")}
    path = verdicts.store(document)
    # The machine-readable copy promotion reads: beside the release it may allow (a ConfigMap in
    # the namespace on Kubernetes, the state folder locally).
    document["record"] = target.records.put("verdict", path.stem.lower(), document)
    verdict = Verdict.model_validate(document)
    page = report.render_html(verdict, results)
    path.with_suffix(".html").write_text(page)
    (path.parent / "latest.html").write_text(page)
    return verdict, path
