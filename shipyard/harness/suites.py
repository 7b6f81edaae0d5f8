"""Running one suite: pytest suites (smoke, integration, contract, acceptance) and locust suites
(load, stress). Each returns what it measured; judging is gates.py's job.

The suites are ordinary test files under tests/staged/ that testers can run on their own
(`SHIPYARD_TARGET_URL=... pytest tests/staged/smoke`, `locust -f tests/staged/load/locustfile.py`);
the harness runs exactly those, the way a tester would, and reads their reports.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.paths import PROJECT_ROOT

STAGED = PROJECT_ROOT / "tests" / "staged"
PYTEST_SUITES = ("smoke", "integration", "contract", "acceptance")
LOCUST_SUITES = ("load", "stress")
ORDER = ("smoke", "integration", "contract", "acceptance", "load", "stress")
DEFAULTS: dict[str, dict[str, Any]] = {
    "contract": {"examples": 100, "seed": 7},  # schemathesis' --max-examples: per operation and phase
    "load": {"users": 32, "spawn_rate": 32, "duration_s": 60, "rps_per_user": 10},
    "stress": {"start_users": 8, "step_users": 16, "peak_users": 128, "step_s": 10, "overload_factor": 3,
               "overload_s": 30, "recovery_s": 20, "p95_ms_limit": 100},
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


def run_suite(suite: str, url: str, configured: dict[str, Any], context: dict[str, str], workdir: Path) -> SuiteResult:
    started = time.monotonic()
    opts = settings(suite, configured)
    if suite in PYTEST_SUITES:
        result = _run_pytest(suite, url, opts, context, workdir)
    else:
        result = _run_locust(suite, url, opts, workdir)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _env(url: str, opts: dict[str, Any], context: dict[str, str], metrics_file: Path) -> dict[str, str]:
    env = dict(os.environ, SHIPYARD_TARGET_URL=url, SHIPYARD_SUITE_METRICS=str(metrics_file))
    env.update({f"SHIPYARD_SUITE_{k.upper()}": str(v) for k, v in opts.items()})
    env.update(context)
    return env


def _run_pytest(suite: str, url: str, opts: dict[str, Any], context: dict[str, str], workdir: Path) -> SuiteResult:
    junit, metrics_file = workdir / f"{suite}.xml", workdir / f"{suite}.metrics.json"
    cmd = [sys.executable, "-m", "pytest", str(STAGED / suite), "-q", "-p", "no:cacheprovider",
           f"--junitxml={junit}", "-o", "addopts=", "-o", "testpaths="]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=_env(url, opts, context, metrics_file),
                          capture_output=True, text=True, timeout=1800)
    passed, failed, failures = _junit(junit)
    metrics: dict[str, float | None] = {"passed": passed, "failed": failed}
    if metrics_file.exists():
        metrics.update(json.loads(metrics_file.read_text()))
    status = "passed" if proc.returncode == 0 else ("failed" if failed else "error")
    details = {"failures": failures}
    if status == "error":
        details["output"] = (proc.stdout + proc.stderr)[-2000:]
    return SuiteResult(suite, status, 0.0, metrics, details)


def _junit(path: Path) -> tuple[int, int, list[dict[str, str]]]:
    if not path.exists():
        return 0, 0, []
    root = ET.parse(path).getroot()
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
    return passed, failed, failures


# --- locust ---------------------------------------------------------------------------------

def _run_locust(suite: str, url: str, opts: dict[str, Any], workdir: Path) -> SuiteResult:
    prefix = workdir / suite
    locustfile = STAGED / suite / "locustfile.py"
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
           "--csv", str(prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING",
           "--exit-code-on-error", "0", "--stop-timeout", "5"]
    if suite == "load":
        cmd += ["-u", str(opts["users"]), "-r", str(opts["spawn_rate"]), "-t", f"{opts['duration_s']}s"]
    report = workdir / f"{suite}_report.json"
    env = dict(os.environ, SHIPYARD_STRESS_REPORT=str(report),
               **{f"SHIPYARD_SUITE_{k.upper()}": str(v) for k, v in opts.items()})
    limit = (float(opts.get("duration_s", 0)) + _stress_seconds(opts) + 120) if suite == "load" else _stress_seconds(opts) + 120
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=limit)
    history = _history(Path(f"{prefix}_stats_history.csv"))
    total = _aggregated(Path(f"{prefix}_stats.csv"))
    if not total or not history:
        return SuiteResult(suite, "error", 0.0, {}, {"output": (proc.stdout + proc.stderr)[-2000:]})
    if suite == "load":
        return SuiteResult(suite, "passed", 0.0, _load_metrics(total), {"history": history})
    if not report.exists():
        return SuiteResult(suite, "error", 0.0, {}, {"output": (proc.stdout + proc.stderr)[-2000:]})
    measured = json.loads(report.read_text())
    steps = measured.pop("steps", [])
    return SuiteResult(suite, "passed", 0.0, measured, {"history": history, "steps": steps})


def _stress_seconds(opts: dict[str, Any]) -> float:
    """The longest the stress shape can run: every step, the overload, the recovery."""
    if "peak_users" not in opts:
        return 0
    steps = max(1, -(-(int(opts["peak_users"]) - int(opts["start_users"])) // int(opts["step_users"])) + 1)
    return steps * float(opts["step_s"]) + float(opts["overload_s"]) + float(opts["recovery_s"])


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


