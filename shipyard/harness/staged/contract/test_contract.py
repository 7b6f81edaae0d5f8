"""Contract: the served OpenAPI document is valid, and the service keeps it.

The document (GET /docs.json) must pass openapi-spec-validator. Then schemathesis runs every one
of its checks over every operation in every phase (examples, coverage, fuzzing, stateful): no 5xx,
every status and body as documented (4xx bodies in the error contract), content types as
documented, schema-valid requests accepted; invalid ones the service accepts anyway are counted
as `lenient_inputs` (pydantic's lax mode), which an environment may gate on. Cases are generated from
the document itself, so this suite knows nothing of any particular model. Seeded: a failure
replays, and each failure is reported with its check and a curl command that reproduces it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from shipyard.harness.staged.plugin import setting
from shipyard.harness.staged.traffic import api_routes, opaque_fields, task_routes

EXAMPLES = int(setting("examples", "100"))  # per operation and phase
SEED = int(setting("seed", "7"))


def test_the_published_document_is_valid_openapi(client, record):
    document = client.get("/docs.json").json()
    try:
        validate(document)
    except OpenAPIValidationError as exc:
        record("document_errors", 1)
        pytest.fail(f"/docs.json is not a valid OpenAPI {document.get('openapi')} document: {str(exc)[:600]}")
    record("document_errors", 0)


# A request the document refuses that the service answered anyway (pydantic's lax mode takes
# `false` or "3" for a number): the service is lenient, not broken. Counted apart, as
# `lenient_inputs`, for an environment that wants its inputs exactly as documented to gate on.
LENIENT_CHECKS = {"negative_data_rejection": "lenient_inputs"}


def _read_events(report_dir: Path) -> dict[str, int]:
    """Cases, 5xx answers and failed checks, counted from schemathesis' own NDJSON event log."""
    counts = {"cases": 0, "server_errors": 0, "contract_failures": 0, "lenient_inputs": 0}
    [log] = report_dir.glob("*.ndjson")
    for line in log.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        counts["cases"] += len(recorder.get("cases") or {})
        for interaction in (recorder.get("interactions") or {}).values():
            if (interaction.get("response") or {}).get("status_code", 0) >= 500:
                counts["server_errors"] += 1
        for checks in (recorder.get("checks") or {}).values():
            for check in checks:
                if check.get("status") == "failure":
                    counts[LENIENT_CHECKS.get(check.get("name", ""), "contract_failures")] += 1
    return counts


def opaque_operations_config(document: dict) -> str:
    """schemathesis' configuration (TOML) for operations whose schema cannot say what is valid: a
    file field's says "bytes", not "an image the model can decode"; a DataFrame's names its
    columns, not their types. A generated body refused there with a 400 is the contract kept, not
    broken (5xx and every other check still count)."""
    routes = {route: route for route in api_routes(document)}
    routes.update({f"{task}/submit": task for task in task_routes(document)})  # a submit takes its API's body
    paths = [path for path, route in routes.items() if opaque_fields(document, route)]
    if not paths:
        return ""
    statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
    return ("[[operations]]\n"
            f"include-path = {json.dumps(paths)}\n"
            f"checks.positive_data_acceptance.expected-statuses = {json.dumps(statuses)}\n")


def test_schemathesis_finds_nothing(url, client, record, tmp_path):
    report_dir = tmp_path / "schemathesis"
    config = tmp_path / "schemathesis.toml"
    config.write_text(opaque_operations_config(client.get("/docs.json").json()))
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/docs.json", "--checks", "all",
           "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--no-color",
           "--report", "junit,ndjson", "--report-dir", str(report_dir)]
    # Its working folder is the test's own: schemathesis keeps a cache there, not in the project.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    if not list(report_dir.glob("*.ndjson")):
        record("contract_failures", None)
        pytest.fail(f"schemathesis did not run (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    counts = _read_events(report_dir)
    for name, value in counts.items():
        record(name, value)
    print(proc.stdout[-4000:])
    assert counts["contract_failures"] == 0 and counts["server_errors"] == 0, (
        "schemathesis found contract failures (each with its check and a curl to reproduce it):\n"
        + _failures_section(proc.stdout))
    if counts["lenient_inputs"]:  # judged by the environment's gate on lenient_inputs, if it has one
        print("requests the document refuses that the service accepted (lenient_inputs):\n"
              + _failures_section(proc.stdout))


def _failures_section(output: str) -> str:
    """One line per failure from schemathesis' report: operation, check, and the curl command
    that reproduces it (`Reproduce with:`), shortest first so the verdict keeps every check."""
    lines, operation, checks = [], "", []
    for raw in output.splitlines():
        text = raw.strip()
        if text.startswith("___") and text.endswith("___"):
            operation = text.strip("_ ")
        elif text.startswith("- ST") or text.startswith("- "):
            checks.append(text[2:])
        elif text.startswith("curl ") and checks:
            lines += [f"{operation}: {check}: {text[:400]}" for check in checks]
            checks = []
    return "\n".join(sorted(set(lines), key=len)) or output[-4000:]


def test_every_error_answer_is_the_documented_error_body(client):
    """The error contract's schema is what the document names for every 4xx/5xx it lists."""
    document = client.get("/docs.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{method.upper()} {path} {status}"

