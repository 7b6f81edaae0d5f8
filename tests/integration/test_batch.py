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
    assert wrong.returncode == 1 and "use .csv, .jsonl, .ndjson, .parquet" in wrong.stderr
    unknown = run_cli("batch", str(tmp_path / "in.xlsx"), str(out), "--model", "fraud_detector:nope", env=cli_env)
    assert unknown.returncode == 2 and "no model 'fraud_detector:nope'" in unknown.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_parquet_in_and_out_with_a_labelled_sample(trained_model, state_dir, tmp_path, cli_env):
    import pandas as pd

    sample = pd.read_csv(state_dir / "data" / "sample.csv", dtype={"merchant_category": str})
    sample.loc[3, "hour"] = 30
    source, out = tmp_path / "in.parquet", tmp_path / "scores.parquet"
    sample.to_parquet(source)
    result = run_cli("batch", str(source), str(out), "--model", trained_model, env=cli_env)
    assert result.returncode == 0, result.stderr
    scored = pd.read_parquet(out)
    assert len(scored) == len(sample) - 1 and 4 not in set(scored["row"])
    assert list(scored["transaction_id"][:2]) == list(sample["transaction_id"][:2])
    assert read(tmp_path / "scores.rejects.csv") == [{"row": "4", "field": "hour", "rule": "less_than_equal",
                                                    "message": "Input should be less than or equal to 23"}]
    assert f"{len(sample)} rows in = {len(sample) - 1} scored" in result.stdout


def test_unknown_columns_are_refused_before_anything_is_written(trained_model, tmp_path, cli_env):
    source, out = tmp_path / "in.csv", tmp_path / "scores.csv"
    source.write_text("amount,colour\n1,red\n")
    result = run_cli("batch", str(source), str(out), "--model", trained_model, env=cli_env)
    assert result.returncode == 1
    assert "unknown column(s) colour" in result.stderr and "missing required column(s) currency" in result.stderr
    assert not list(tmp_path.glob("scores*"))


def test_an_interrupted_run_leaves_no_output_that_looks_complete(trained_model, tmp_path, cli_env):
    """SIGTERM in the middle of a run. The middle is made certain, not hoped for: the run's stderr
    is a pipe of one page that this test stops reading after the first progress line, so the run
    blocks on its next page of progress lines, with its outputs half written, until it is told."""
    import fcntl
    import os
    import signal
    import subprocess
    import sys

    from service.model import generate_transactions
    from tests.conftest import PROJECT_ROOT

    source, out = tmp_path / "big.csv", tmp_path / "scores.csv"
    generate_transactions(800_000, seed=5).to_csv(source, index=False)  # 400 progress lines: pages of them
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "batch", str(source), str(out), "--model",
                             trained_model, "--chunk-rows", "2000"], cwd=PROJECT_ROOT, env=dict(os.environ, **cli_env),
                            stdout=subprocess.DEVNULL, stderr=write_end)
    os.close(write_end)
    said = b""
    while b" rows: " not in said:  # byte by byte: nothing past the first progress line leaves the pipe
        byte = os.read(read_end, 1)
        assert byte, f"the run ended before its first progress line: {said.decode(errors='replace')}"
        said += byte
    assert list(tmp_path.glob("*.partial")), "the run should be writing .partial files"
    proc.send_signal(signal.SIGTERM)
    with os.fdopen(read_end, "rb") as rest:
        said += rest.read()
    assert proc.wait(timeout=60) == 130, said.decode(errors="replace")[-2000:]
    assert b"interrupted" in said
    assert not out.exists() and not list(tmp_path.glob("*.partial")) and not (tmp_path / "scores.rejects.csv").exists()
