"""The verdict: one JSON document per verification, stored with the environment it judged.

It names the exact subject (image digest on Kubernetes, Bento on the local target), the model
and its training-data hash, every suite's result and every gate with threshold and measured
value, so a promotion it allowed can always be explained afterwards.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shipyard.evidence import Verdict
from shipyard.harness.gates import GateResult
from shipyard.harness.suites import SuiteResult
from shipyard.paths import state_dir

SCHEMA = Verdict.model_fields["schema_"].default


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build(environment: str, target: str, subject: dict[str, str], suites: list[SuiteResult],
          gates: list[GateResult], started_at: str, requested: list[str]) -> dict[str, Any]:
    skipped = [s for s in requested if s not in {r.name for r in suites}]
    gated = {g.suite for g in gates}
    document = {
        "schema": SCHEMA,
        "environment": environment,
        "target": target,
        "subject": subject,
        # Gates judge the suites that declare them; a suite without gates must pass every test;
        # a suite that could not run at all, or was skipped, fails the verdict.
        "passed": bool(gates) and all(g.passed for g in gates) and not skipped
                  and all(s.status != "error" and (s.status == "passed" or s.name in gated) for s in suites),
        "suites": [{k: v for k, v in asdict(s).items() if k != "details"}
                   | {"failures": s.details.get("failures", [])[:20]}
                   | ({"replicas": s.details["replicas"]} if s.details.get("replicas") else {})
                   | ({"inconclusive": s.details["inconclusive"]} if s.details.get("inconclusive") else {})
                   | {key: s.details[key] for key in ("steps", "connections") if s.details.get(key)}  # stress's ramp
                   for s in suites],
        "not_run": skipped,
        # Operations of the served document that only some suites (or none) could call, and why.
        "not_exercised": sorted({note for s in suites for note in s.details.get("not_exercised", [])}),
        "gates": [asdict(g) for g in gates],
        "started_at": started_at,
        "finished_at": now(),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
    }
    Verdict.model_validate(document)  # written in the schema it is read back with (shipyard.evidence)
    return document


def folder(environment: str) -> Path:
    return state_dir() / "verdicts" / environment


def store(verdict: dict[str, Any]) -> Path:
    """Writes <id>.json and latest.json atomically; returns the verdict's path."""
    out = folder(verdict["environment"])
    out.mkdir(parents=True, exist_ok=True)
    stamp = verdict["finished_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = out / f"{stamp}.json"
    for target in (path, out / "latest.json"):
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(verdict, indent=2))
        tmp.replace(target)
    return path


def latest(environment: str) -> dict[str, Any] | None:
    try:
        return json.loads((folder(environment) / "latest.json").read_text())
    except (OSError, ValueError):
        return None
