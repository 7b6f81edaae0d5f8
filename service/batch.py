"""Batch mode: a file of transactions in, predictions and rejects out, nothing lost.

Every row is validated with the same schema as the real-time API; valid rows are scored in chunks
by the same pipeline; each invalid row goes to the rejects file with its row number and reason.
The input is streamed (bounded memory), outputs are written beside their final names and renamed
only when the run is complete and the counts add up, so a half-written file never looks finished.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from pydantic import ValidationError

from service.model import features_frame
from service.schemas import FEATURES, Transaction

CHUNK_ROWS = 20_000
_FLOAT = {"amount", "distance_from_home_km", "avg_amount_30d"}
_INT = {"hour", "transactions_last_24h", "account_age_days"}
_BOOL = {"true": True, "false": False, "1": True, "0": False}


class BatchError(Exception):
    """The input cannot be read, or the run did not account for every row (exit code 1/2)."""


@dataclass(frozen=True)
class BatchResult:
    rows: int
    scored: int
    rejected: int
    output: Path
    rejects: Path


def _from_text(row: dict[str, str]) -> dict[str, Any]:
    """CSV has no types: turn text into the schema's types where it parses, leave it otherwise
    (the schema then rejects the field by name). Empty cells are missing values."""
    out: dict[str, Any] = {}
    for key, text in row.items():
        if key is None:
            out["(extra columns)"] = text
            continue
        if text == "" or text is None:
            continue
        value: Any = text
        try:
            if key in _FLOAT:
                value = float(text)
            elif key in _INT and text.lstrip("-").isdigit():
                value = int(text)
            elif key == "card_present" and text.lower() in _BOOL:
                value = _BOOL[text.lower()]
        except ValueError:
            pass
        out[key] = value
    return out


def _records(path: Path) -> Iterator[dict[str, Any] | Exception]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                row.pop("is_fraud", None)  # a labelled sample scores like any input
                yield _from_text(row)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open() as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    yield record if isinstance(record, dict) else ValueError("not a JSON object")
                except ValueError as exc:
                    yield exc
    else:
        raise BatchError(f"{path}: unsupported input format {suffix or '(none)'}; use .csv or .jsonl")


def score_file(source: Path, output: Path, rejects: Path, pipeline: Any, threshold: float, model_version: str,
               chunk_rows: int = CHUNK_ROWS, progress: Callable[[int, int, int], None] = lambda *_: None) -> BatchResult:
    if not source.is_file():
        raise BatchError(f"input {source} does not exist")
    partial_out, partial_rej = output.with_name(output.name + ".partial"), rejects.with_name(rejects.name + ".partial")
    rows = scored = rejected = 0
    try:
        with partial_out.open("w", newline="") as out_f, partial_rej.open("w", newline="") as rej_f:
            out = csv.writer(out_f)
            rej = csv.writer(rej_f)
            out.writerow(["row", "transaction_id", "probability", "decision", "threshold", "model_version"])
            rej.writerow(["row", "field", "rule", "message"])
            pending: list[tuple[int, Transaction]] = []

            def flush() -> None:
                nonlocal scored
                if not pending:
                    return
                proba = np.asarray(pipeline.predict_proba(features_frame(t.model_dump() for _, t in pending)))[:, 1]
                if not np.all(np.isfinite(proba)) or proba.min() < 0 or proba.max() > 1:
                    raise BatchError("the model's answers broke the output contract (NaN or outside [0, 1])")
                for (row_no, tx), p in zip(pending, proba):
                    out.writerow([row_no, tx.transaction_id or "", f"{p:.6f}",
                                  "fraud" if p >= threshold else "legitimate", threshold, model_version])
                scored += len(pending)
                pending.clear()

            for record in _records(source):
                rows += 1
                if isinstance(record, Exception):
                    rej.writerow([rows, "line", "json_invalid", str(record)[:200]])
                    rejected += 1
                    continue
                try:
                    pending.append((rows, Transaction.model_validate(record)))
                except ValidationError as exc:
                    first = exc.errors()[0]
                    field = ".".join(str(p) for p in first["loc"]) or "row"
                    rej.writerow([rows, field, first["type"], first["msg"]])
                    rejected += 1
                if len(pending) >= chunk_rows:
                    flush()
                    progress(rows, scored, rejected)
            flush()
            progress(rows, scored, rejected)
        if rows != scored + rejected:
            raise BatchError(f"{rows} rows read but {scored} scored and {rejected} rejected")
        os.replace(partial_out, output)
        os.replace(partial_rej, rejects)
    except BaseException:
        partial_out.unlink(missing_ok=True)
        partial_rej.unlink(missing_ok=True)
        raise
    return BatchResult(rows, scored, rejected, output, rejects)


__all__ = ["BatchError", "BatchResult", "score_file", "FEATURES"]
