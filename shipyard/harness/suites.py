"""Running one suite, the way a tester would, and reading its reports: pytest suites (smoke and
contract, which shipyard brings, and the project's own) through their JUnit XML, whose test-suite
properties carry the measured values; locust suites (load, or the project's) through their CSV
statistics; the stress suite (an open-loop generator, staged/stress) through its JSON report; a
project's command through its exit code and a JSON object on its last line.
Judging is gates.py's job.

The built-in suites live beside this module (staged/); testers can run them by hand too:
`SHIPYARD_TARGET_URL=... pytest -p shipyard.harness.staged.plugin <shipyard>/harness/staged/smoke`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shipyard.harness import stress
from shipyard.project import Project, SuiteSpec, command_line

STAGED = Path(__file__).resolve().parent / "staged"
PLUGIN = "shipyard.harness.staged.plugin"
BUILTIN: dict[str, SuiteSpec] = {
    "smoke": SuiteSpec(runner="pytest", path=str(STAGED / "smoke")),
    "contract": SuiteSpec(runner="pytest", path=str(STAGED / "contract")),
    "load": SuiteSpec(runner="locust", path=str(STAGED / "load" / "locustfile.py")),
    "stress": SuiteSpec(runner="command", command=[sys.executable, "-m", "shipyard.harness.staged.stress"]),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "contract": {"examples": 100, "seed": 7},  # schemathesis' --max-examples: per operation and phase
    "load": {"users": 32, "spawn_rate": 32, "duration_s": 60, "rps_per_user": 10},
    "stress": stress.SETTINGS,
}


@dataclass
class SuiteResult:
    name: str
    status: str  # passed | failed | error
    seconds: float
    metrics: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)


def settings(suite: str, configured: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS.get(suite, {}), **configured}


def spec_for(project: Project, suite: str) -> SuiteSpec:
    """A built-in suite's spec, or the project's own with its path made absolute."""
    if suite in BUILTIN:
        return BUILTIN[suite]
    own = project.suites[suite]
    if own.runner == "schemathesis":  # the contract suite's own file, with this suite's settings
        return BUILTIN["contract"]
    return own.model_copy(update={"path": str(project.path(own.path))}) if own.path else own


def run_suite(project: Project, suite: str, url: str, configured: dict[str, Any], context: dict[str, str],
              workdir: Path, locust_workers: int = 0, progress: Callable[[str], None] | None = None) -> SuiteResult:
    """Runs one suite from here against `url`. With locust_workers, a locust suite runs as the
    master of that many workers (started elsewhere: pods, see shipyard.targets.suite_pods), which
    connect to this process on MASTER_PORT. `progress` hears the stress suite's phases as they go."""
    started = time.monotonic()
    opts = settings(suite, configured)
    spec = spec_for(project, suite)
    env = suite_environment(suite, url, configured, context)
    if spec is BUILTIN["stress"]:
        result = _run_stress(project, opts, env, workdir, progress or (lambda line: print(line, file=sys.stderr)))
    elif spec.runner == "pytest":
        result = _run_pytest(project, suite, spec, env, workdir)
    elif spec.runner == "locust":
        result = _run_locust(project, suite, spec, url, opts, env, workdir, locust_workers)
    else:
        result = _run_command(project, suite, spec, env)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def suite_environment(suite: str, url: str, configured: dict[str, Any], context: dict[str, str]) -> dict[str, str]:
    """What a suite's process is told: the URL, the context and its settings (SHIPYARD_SUITE_*)."""
    return dict(os.environ, SHIPYARD_TARGET_URL=url, **context,
                **{f"SHIPYARD_SUITE_{k.upper()}": str(v) for k, v in settings(suite, configured).items()})


def locust_worker_command(project: Project, suite: str, master_host: str) -> list[str]:
    """One locust worker of a locust suite whose master (run_suite with locust_workers) is at master_host."""
    spec = spec_for(project, suite)
    if spec.runner != "locust":
        raise ValueError(f"suite {suite} runs with {spec.runner}, not locust: it has no workers")
    return [sys.executable, "-m", "locust", "-f", str(spec.path), "--worker", "--master-host", master_host,
            "--master-port", str(MASTER_PORT), "--loglevel", "WARNING"]


class HostRunner:
    """Suites run from this machine against `url` (the local target's server): pytest and locust
    as processes here. The Kubernetes target runs them as pods instead (targets.suite_pods)."""

    def __init__(self, url: str, subject: dict[str, str]) -> None:
        self.url, self.subject = url, subject

    def where(self, workers: int = 0) -> str:
        import socket

        return f"this machine ({socket.gethostname()}): processes against {self.url}"

    def run(self, project: Project, suite: str, settings: dict[str, Any], context: dict[str, str],
            progress: Any = None) -> SuiteResult:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="shipyard-verify-") as workdir:
            result = run_suite(project, suite, self.url, settings, context, Path(workdir), progress=progress)
        result.details["generator"] = self.where()
        return result


def _run_pytest(project: Project, suite: str, spec: SuiteSpec, env: dict[str, str], workdir: Path) -> SuiteResult:
    junit = workdir / f"{suite}.xml"
    cmd = [sys.executable, "-m", "pytest", str(spec.path), "-q", "-p", "no:cacheprovider", "-p", PLUGIN,
           f"--junitxml={junit}", "-o", "addopts=", "-o", "testpaths=", "-o", "junit_family=xunit2",
           f"--rootdir={project.root}"]
    proc = subprocess.run(cmd, cwd=project.root, env=env, capture_output=True, text=True, timeout=1800)
    passed, failed, failures, properties = _junit(junit)
    properties.pop("not_exercised", None)  # a list of notes, not a measurement (see _not_exercised)
    metrics: dict[str, float | None] = {"passed": passed, "failed": failed, **properties}
    status = "passed" if proc.returncode == 0 else ("failed" if failed else "error")
    details: dict[str, Any] = {"failures": failures, "not_exercised": _not_exercised(junit)}
    if status == "error":
        details["output"] = (proc.stdout + proc.stderr)[-2000:]
    return SuiteResult(suite, status, 0.0, metrics, details)


def _run_command(project: Project, suite: str, spec: SuiteSpec, env: dict[str, str]) -> SuiteResult:
    assert spec.command is not None
    proc = subprocess.run(command_line(spec.command), cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=1800)
    lines = proc.stdout.strip().splitlines()
    metrics: dict[str, float | None] = {}
    if lines:
        try:
            last = json.loads(lines[-1])
            metrics = {k: _num(v) for k, v in last.items()} if isinstance(last, dict) else {}
        except ValueError:
            pass
    status = "passed" if proc.returncode == 0 else "failed"
    return SuiteResult(suite, status, 0.0, metrics,
                       {"output": (proc.stdout + proc.stderr)[-2000:]} if status != "passed" else {})


def _junit(path: Path) -> tuple[int, int, list[dict[str, str]], dict[str, float | None]]:
    """Passed and failed tests, each failure's message, and the test-suite properties (the last
    value recorded under a name wins)."""
    if not path.exists():
        return 0, 0, [], {}
    root = ET.parse(path).getroot()
    properties = {p.get("name", ""): _num(p.get("value")) for p in root.iter("property")}
    passed = failed = 0
    failures = []
    for case in root.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed += 1
            message = problem.get("message") or ""
            if "more lines" in message and problem.text:  # pytest shortened it: the "E" lines are all of it
                message = "\n".join(line[1:].strip() for line in problem.text.splitlines() if line.startswith("E "))
            # Long enough for what a failure says to reproduce itself (schemathesis' curl commands).
            failures.append({"test": case.get("name", ""), "message": message[:4000]})
        elif case.find("skipped") is None:
            passed += 1
    return passed, failed, failures, properties


# --- locust ---------------------------------------------------------------------------------

MASTER_PORT = 5557  # locust's own default
WORKERS_WAIT_S = 120  # how long a master waits for its workers to connect before it gives up


def _run_locust(project: Project, suite: str, spec: SuiteSpec, url: str, opts: dict[str, Any], env: dict[str, str],
                workdir: Path, workers: int = 0) -> SuiteResult:
    prefix = workdir / suite
    cmd = [sys.executable, "-m", "locust", "-f", str(spec.path), "--headless", "--host", url,
           "--csv", str(prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING",
           "--exit-code-on-error", "0", "--stop-timeout", "5"]
    if workers:
        cmd += ["--master", "--master-bind-port", str(MASTER_PORT), "--expect-workers", str(workers),
                "--expect-workers-max-wait", str(WORKERS_WAIT_S)]
    for flag, key in (("-u", "users"), ("-r", "spawn_rate")):
        if key in opts:
            cmd += [flag, str(opts[key])]
    cmd += ["-t", f"{opts.get('duration_s', 60)}s"]
    limit = float(opts.get("duration_s", 60)) + 120 + (WORKERS_WAIT_S if workers else 0)
    proc = subprocess.run(cmd, cwd=project.root, env=env, capture_output=True, text=True, timeout=limit)
    history = _history(Path(f"{prefix}_stats_history.csv"))
    total = _aggregated(Path(f"{prefix}_stats.csv"))
    if not total or not history:
        return SuiteResult(suite, "error", 0.0, {}, {"output": (proc.stdout + proc.stderr)[-2000:]})
    if workers and "Gave up waiting for workers" in proc.stderr:  # locust then writes empty statistics
        return SuiteResult(suite, "error", 0.0, {}, {"output": f"its {workers} locust worker(s) did not connect to the "
                                                    f"master within {WORKERS_WAIT_S} s: nothing was sent\n"
                                                    + (proc.stdout + proc.stderr)[-1500:]})
    if not _num(total.get("Request Count", "")):  # users that could not send (a failed plan) leave only errors
        raised = _locust_exceptions(Path(f"{prefix}_exceptions.csv"))
        return SuiteResult(suite, "error", 0.0, {}, {"output": f"locust sent no request in its {opts.get('duration_s', 60)} s "
                                                    f"run; its users raised {raised or 'nothing'}. It said first:\n"
                                                    + (proc.stderr or proc.stdout)[:1500]})
    return SuiteResult(suite, "passed", 0.0, _load_metrics(total),
                       {"history": history, "failures": _locust_failures(Path(f"{prefix}_failures.csv"))})


def _locust_exceptions(path: Path) -> str:
    """What locust's users raised (its exceptions CSV), most frequent first, on one line."""
    return "; ".join(f"{count} x {row.get('Message', '')}" for row, count in _by_count(path, "Count")[:5])


def _by_count(path: Path, column: str, keep: Callable[[dict[str, str]], bool] = lambda row: True
              ) -> list[tuple[dict[str, str], int]]:
    """A locust CSV's rows with their count in `column`, most frequent first ([] without the file)."""
    if not path.exists():
        return []
    with path.open() as f:
        rows = [(row, int(_num(row.get(column, "")) or 0)) for row in csv.DictReader(f) if keep(row)]
    return sorted(rows, key=lambda pair: -pair[1])


def _locust_failures(path: Path) -> list[dict[str, str]]:
    """What each failed request got (locust's failures CSV: a status, a refusal, a reset
    connection), most frequent first: an error rate says how many, this says what."""
    return [{"test": f"{row.get('Method', '')} {row.get('Name', '')}".strip(), "message": f"{count} x {row['Error']}"}
            for row, count in _by_count(path, "Occurrences", lambda row: bool(row.get("Error")))[:20]]


def _run_stress(project: Project, opts: dict[str, Any], env: dict[str, str], workdir: Path,
                progress: Callable[[str], None]) -> SuiteResult:
    """The stress suite (staged/stress), its phases passed to `progress` as they go: its JSON
    report's metrics; an inconclusive run keeps its reason, which every stress gate then reports
    as its missing data."""
    report = workdir / "stress_report.json"
    spec = BUILTIN["stress"]
    assert spec.command is not None
    # Every ramp step and its drain (answers are awaited up to 30 s), the overload, the recovery.
    limit = len(stress.ramp_rates(opts)) * (float(opts["step_s"]) + 35) + float(opts["overload_s"]) \
        + float(opts["recovery_s"]) + 120
    output: list[str] = []
    with subprocess.Popen(command_line(spec.command), cwd=project.root, env=dict(env, SHIPYARD_STRESS_REPORT=str(report)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        timer = threading.Timer(limit, proc.kill)  # a hang ends; its lines so far are the error's output
        timer.start()
        try:
            for line in proc.stdout or ():
                output.append(line)
                if line.startswith("stress: "):
                    progress(line.rstrip())
        finally:
            timer.cancel()
    if proc.returncode != 0 or not report.exists():
        return SuiteResult("stress", "error", 0.0, {}, {"output": "".join(output)[-2000:]})
    measured = json.loads(report.read_text())
    details = {key: measured[key] for key in ("steps", "timeline", "inconclusive", "measured", "connections")
               if measured.get(key)}
    return SuiteResult("stress", "passed", 0.0, measured["metrics"], details)


def _not_exercised(path: Path) -> list[str]:
    """What a suite says it could not exercise and why: the `not_exercised` property, a JSON list
    (smoke records the document's operations no built-in suite but contract calls)."""
    if not path.exists():
        return []
    for prop in ET.parse(path).getroot().iter("property"):
        if prop.get("name") == "not_exercised":
            try:
                return [str(item) for item in json.loads(prop.get("value") or "[]")]
            except ValueError:
                return []
    return []


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _aggregated(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    with path.open() as f:
        return next((row for row in csv.DictReader(f) if row.get("Name") == "Aggregated"), None)


def _history(path: Path) -> list[dict[str, float | None]]:
    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("Name") != "Aggregated":
                continue
            rows.append({"t": _num(row["Timestamp"]), "users": _num(row["User Count"]),
                         "rps": _num(row["Requests/s"]), "fps": _num(row["Failures/s"]),
                         "p50_ms": _num(row["50%"]), "p95_ms": _num(row["95%"]), "p99_ms": _num(row["99%"])})
    if rows:
        t0 = rows[0]["t"] or 0
        for r in rows:
            r["t"] = (r["t"] or t0) - t0
    return rows


def _load_metrics(total: dict[str, str]) -> dict[str, float | None]:
    requests = _num(total["Request Count"]) or 0
    failures = _num(total["Failure Count"]) or 0
    return {
        "requests": requests,
        "rps": _num(total["Requests/s"]),
        "p50_ms": _num(total["50%"]),
        "p95_ms": _num(total["95%"]),
        "p99_ms": _num(total["99%"]),
        "error_rate": failures / requests if requests else None,
    }


