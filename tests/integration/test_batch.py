"""Batch mode through the real CLI: every row scored or rejected with its reason, scores equal
to the real-time service's, outputs only when complete."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import VALID_TRANSACTION, run_cli

pytestmark = pytest.mark.server
FIELDS = list(VALID_TRANSACTION)


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read(path):
    with path.open() as f:
        return list(csv.DictReader(f))


ROWS = [
    {**VALID_TRANSACTION, "transaction_id": "ok-1"},
    {**VALID_TRANSACTION, "transaction_id": "bad-hour", "hour": 24},
    {**VALID_TRANSACTION, "transaction_id": "ok-2", "amount": 900.0, "hour": 3, "card_present": False},
    {**VALID_TRANSACTION, "transaction_id": "bad-currency", "currency": "XXX"},
    {**VALID_TRANSACTION, "transaction_id": "bad-amount", "amount": "nan"},
    {**VALID_TRANSACTION, "transaction_id": "missing", "country": ""},
    {**VALID_TRANSACTION, "transaction_id": "ok-3", "currency": "JPY", "amount": 6000.0},
]


def test_csv_rows_are_scored_or_rejected_with_their_reason(trained_model, tmp_path, cli_env):
    source, out = tmp_path / "in.csv", tmp_path / "scores.csv"
    write_csv(source, ROWS)
    result = run_cli("batch", str(source), str(out), "--model", trained_model, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "7 rows in = 3 scored" in result.stdout and "+ 4 rejected" in result.stdout
    scored, rejects = read(out), read(tmp_path / "scores.rejects.csv")
    assert [r["transaction_id"] for r in scored] == ["ok-1", "ok-2", "ok-3"]
    assert [r["row"] for r in scored] == ["1", "3", "7"]
    assert {(r["row"], r["field"], r["rule"]) for r in rejects} == {
        ("2", "hour", "less_than_equal"), ("4", "currency", "literal_error"),
        ("5", "amount", "finite_number"), ("6", "country", "missing")}
    assert not list(tmp_path.glob("*.partial"))


def test_batch_scores_equal_the_real_time_service(trained_model, served, tmp_path, cli_env):
    import httpx

    source, out = tmp_path / "in.jsonl", tmp_path / "scores.csv"
    valid = [r for r in ROWS if r["transaction_id"].startswith("ok")]
    source.write_text("\n".join(json.dumps(r) for r in valid) + "\nnot json\n")
    result = run_cli("batch", str(source), str(out), "--model", trained_model, env=cli_env)
    assert result.returncode == 0, result.stderr
    online = httpx.post(f"{served.url}/score_batch", json=valid, timeout=30).json()
    offline = read(out)
    for a, b in zip(online, offline):
        assert a["transaction_id"] == b["transaction_id"] and a["decision"] == b["decision"]
        assert abs(a["probability"] - float(b["probability"])) < 1e-6
    assert read(tmp_path / "scores.rejects.csv")[0]["rule"] == "json_invalid"


def test_bad_input_is_a_clear_error_and_writes_nothing(trained_model, tmp_path, cli_env):
    out = tmp_path / "scores.csv"
    missing = run_cli("batch", str(tmp_path / "nope.csv"), str(out), "--model", trained_model, env=cli_env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    (tmp_path / "in.xlsx").write_text("x")
    wrong = run_cli("batch", str(tmp_path / "in.xlsx"), str(out), "--model", trained_model, env=cli_env)
    assert wrong.returncode == 1 and "use .csv or .jsonl" in wrong.stderr
    unknown = run_cli("batch", str(tmp_path / "in.xlsx"), str(out), "--model", "fraud_detector:nope", env=cli_env)
    assert unknown.returncode == 2 and "no model 'fraud_detector:nope'" in unknown.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
