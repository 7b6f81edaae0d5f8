"""Batch mode: a file of transactions in, predictions and rejects out, nothing lost.

The input is read in chunks (bounded memory, whatever the file's size); each chunk is validated
with the service's schema (service.frames: column checks derived from it, pydantic the judge of
every row they do not clear), valid rows are scored by the same pipeline in one call per chunk,
and each invalid row goes to the rejects file with its row number, field, rule and message.
Outputs are written beside their final names and renamed only when the run is complete and
rows in = scored + rejected, so an interrupted run (SIGINT, SIGTERM, a crash) leaves nothing
that looks finished: rerun it.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from service.frames import COLUMNS, ID, RULES, Rejection, certainly_valid, judge, record
from service.model import LABEL, features_frame
from service.schemas import FEATURES, MODEL_NAME

CHUNK_ROWS = 50_000
INPUTS = (".csv", ".jsonl", ".ndjson", ".parquet")
OUTPUTS = (".csv", ".parquet")
_TRUE_FALSE = {"true": True, "false": False, "1": True, "0": False}
# The dtypes the model was trained with (service.model.generate_transactions); scikit-learn's
# encoder misreads a bool feature cast to float, so every chunk is cast back to these.
TRAINING_DTYPES = {name: {"float": "float64", "int": "int64", "bool": "bool", "str": "str"}[RULES[name].kind]
                   for name in FEATURES}
OUTPUT_SCHEMA = pa.schema([("row", pa.int64()), ("transaction_id", pa.string()), ("probability", pa.float64()),
                           ("decision", pa.string()), ("threshold", pa.float64()), ("model_version", pa.string())])


class BatchError(Exception):
    """The input cannot be read, or the run did not account for every row."""


@dataclass(frozen=True)
class BatchResult:
    rows: int
    scored: int
    rejected: int
    output: Path
    rejects: Path


@dataclass
class Chunk:
    """Rows of the input, typed as far as their format allows.

    `records` holds JSON's own objects when the input is JSON Lines: the schema must judge what
    the sender wrote, not pandas' upcast of it (14 next to 14.5 would become 14.0)."""

    rows: np.ndarray  # 1-based input row (line) numbers of the frame's rows
    frame: pd.DataFrame
    records: list[dict[str, Any]] | None = None
    unreadable: list[tuple[int, Rejection]] = field(default_factory=list)


def _check_header(columns: list[str], source: Path) -> None:
    unknown = [c for c in columns if c not in RULES and c != LABEL]
    missing = [c for c, rule in RULES.items() if rule.required and c not in columns]
    if unknown or missing:
        problems = ([f"unknown column(s) {', '.join(unknown)} (the schema forbids extra fields)"] if unknown else []) + \
                   ([f"missing required column(s) {', '.join(missing)}"] if missing else [])
        raise BatchError(f"{source}: {'; '.join(problems)}; expected columns: {', '.join(COLUMNS)}")


def _from_text(text: Any, kind: str) -> Any:
    """CSV has no types: a cell becomes the schema's type where it parses and stays text
    otherwise, so the schema rejects it by name. Empty cells are missing values."""
    if not isinstance(text, str):
        return text
    try:
        if kind == "float":
            return float(text)
        if kind == "int" and text.lstrip("-").isdigit():
            return int(text)
    except ValueError:
        return text
    if kind == "bool" and text.lower() in _TRUE_FALSE:
        return _TRUE_FALSE[text.lower()]
    return text


def _type_csv_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas types clean columns natively; only columns with dirty cells are converted by hand."""
    for name in frame.columns:
        rule = RULES.get(name)
        if rule is None or rule.kind == "str":
            continue
        column = frame[name]
        kind = column.dtype.kind
        if rule.kind == "float" and kind == "f" and column.isna().any():  # blank cells: None, not NaN
            frame[name] = column.astype(object).where(column.notna(), None)
        elif rule.kind == "int" and kind == "f":  # blank cells made the column float
            frame[name] = pd.Series([None if np.isnan(v) else int(v) if v.is_integer() else v
                                     for v in column.to_numpy()], index=frame.index, dtype=object)
        elif rule.kind == "bool" and kind in "iu" and column.isin((0, 1)).all():
            frame[name] = column.astype(bool)
        elif (rule.kind in ("float", "int") and kind not in "fiu") or (rule.kind == "bool" and kind != "b"):
            frame[name] = pd.Series([None if v is None or (isinstance(v, float) and np.isnan(v)) else _from_text(v, rule.kind)
                                     for v in column.astype(object)],
                                    index=frame.index, dtype=object)
    return frame


def _csv_chunks(source: Path, chunk_rows: int, start: int) -> Iterator[Chunk]:
    strings = {name: "str" for name, rule in RULES.items() if rule.kind == "str"}
    _check_header(list(pd.read_csv(source, nrows=0).columns), source)
    with pd.read_csv(source, chunksize=chunk_rows, dtype=strings, keep_default_na=False, na_values=[""]) as reader:
        for frame in reader:
            frame = frame.drop(columns=[LABEL], errors="ignore").reset_index(drop=True)
            yield Chunk(np.arange(start, start + len(frame)), _type_csv_columns(frame))
            start += len(frame)


def _parquet_chunks(source: Path, chunk_rows: int, start: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(source)
    _check_header(file.schema_arrow.names, source)
    for batch in file.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas().drop(columns=[LABEL], errors="ignore")
        yield Chunk(np.arange(start, start + len(frame)), frame)
        start += len(frame)


def _jsonl_chunks(source: Path, chunk_rows: int, start: int) -> Iterator[Chunk]:
    rows: list[int] = []
    records: list[dict[str, Any]] = []
    unreadable: list[tuple[int, Rejection]] = []
    with source.open() as f:
        for line_no, line in enumerate(f, start=start):
            if not line.strip():
                unreadable.append((line_no, Rejection("line", "json_invalid", "empty line")))
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                unreadable.append((line_no, Rejection("line", "json_invalid", str(exc)[:200])))
                continue
            if not isinstance(value, dict):
                unreadable.append((line_no, Rejection("line", "json_invalid", "not a JSON object")))
                continue
            value.pop(LABEL, None)
            rows.append(line_no)
            records.append(value)
            if len(records) >= chunk_rows:
                yield Chunk(np.array(rows), pd.DataFrame.from_records(records), records, unreadable)
                rows, records, unreadable = [], [], []
    if records or unreadable:
        yield Chunk(np.array(rows, dtype=np.int64), pd.DataFrame.from_records(records), records, unreadable)


def read_chunks(source: Path, chunk_rows: int = CHUNK_ROWS, first_row: int = 1) -> Iterator[Chunk]:
    """Chunks of a CSV (header row), JSON Lines or Parquet file, in input order, its rows numbered
    from `first_row` (a shard of a larger input keeps the numbers of the whole)."""
    readers = {".csv": _csv_chunks, ".jsonl": _jsonl_chunks, ".ndjson": _jsonl_chunks, ".parquet": _parquet_chunks}
    suffix = source.suffix.lower()
    if suffix not in readers:
        raise BatchError(f"{source}: unsupported input format {suffix or '(none)'}; use {', '.join(INPUTS)}")
    if not source.is_file():
        raise BatchError(f"input {source} does not exist")
    return readers[suffix](source, chunk_rows, first_row)


@dataclass(frozen=True)
class Validated:
    """One chunk split by the schema: model input for the valid rows, reasons for the others."""

    rows: np.ndarray
    ids: pd.Series  # transaction ids (missing: NA); a Series, so a million never become Python objects
    features: pd.DataFrame
    rejects: list[tuple[int, Rejection]]


def validate_chunk(chunk: Chunk) -> Validated:
    frame = chunk.frame
    fast = certainly_valid(frame) if len(frame) else np.zeros(0, dtype=bool)
    doubtful = np.flatnonzero(~fast)
    if chunk.records is not None:
        doubtful_records = [chunk.records[i] for i in doubtful]
    else:
        doubtful_records = [record(r) for r in frame.iloc[doubtful].to_dict("records")]
    verdicts = judge(doubtful_records)
    accepted = [(i, v) for i, v in zip(doubtful, verdicts) if not isinstance(v, Rejection)]
    rejects = sorted(chunk.unreadable + [(int(chunk.rows[i]), v) for i, v in zip(doubtful, verdicts)
                                         if isinstance(v, Rejection)])
    parts = [frame.loc[fast, list(FEATURES)]]
    ids = frame[ID] if ID in frame.columns else pd.Series([None] * len(frame), index=frame.index, dtype=object)
    id_parts = [ids[fast]]
    if accepted:
        index = pd.Index([i for i, _ in accepted])
        parts.append(features_frame(t.model_dump() for _, t in accepted).set_index(index))
        id_parts.append(pd.Series([t.transaction_id for _, t in accepted], index=index))
    features = pd.concat(parts).sort_index() if len(parts) > 1 else parts[0]
    # One dtype per column, as in training, whichever path a row took (str + object would mix).
    features = features.astype(TRAINING_DTYPES)
    order = features.index.to_numpy()
    all_ids = pd.concat(id_parts).loc[order] if len(id_parts) > 1 else id_parts[0]
    return Validated(chunk.rows[order], all_ids.reset_index(drop=True), features.reset_index(drop=True), rejects)


def scores(pipeline: Any, features: pd.DataFrame) -> np.ndarray:
    """P(fraud) per row, refused when the model breaks the output contract (NaN or outside [0, 1])."""
    if not len(features):
        return np.zeros(0)
    proba = np.asarray(pipeline.predict_proba(features))
    if proba.shape != (len(features), 2):
        raise BatchError(f"the model returned shape {proba.shape}, expected ({len(features)}, 2)")
    p = proba[:, 1]
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise BatchError("the model's answers broke the output contract (NaN or outside [0, 1])")
    return p


class _Writer:
    """Predictions as CSV or Parquet, streamed chunk by chunk."""

    def __init__(self, path: Path, suffix: str) -> None:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            self._writer: Any = pq.ParquetWriter(str(path), OUTPUT_SCHEMA)
        else:
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(str(path), OUTPUT_SCHEMA)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


def score_file(source: Path, output: Path, rejects: Path, pipeline: Any, threshold: float, model_version: str,
               chunk_rows: int = CHUNK_ROWS, progress: Callable[[int, int, int], None] = lambda *_: None,
               first_row: int = 1) -> BatchResult:
    if output.suffix.lower() not in OUTPUTS:
        raise BatchError(f"{output}: unsupported output format {output.suffix or '(none)'}; use {', '.join(OUTPUTS)}")
    chunks = read_chunks(source, chunk_rows, first_row)
    partial_out, partial_rej = output.with_name(output.name + ".partial"), rejects.with_name(rejects.name + ".partial")
    rows = scored = rejected = 0
    try:
        writer = _Writer(partial_out, output.suffix.lower())
        try:
            with partial_rej.open("w", newline="") as rej_f:
                rej = csv.writer(rej_f)
                rej.writerow(["row", "field", "rule", "message"])
                for chunk in chunks:
                    checked = validate_chunk(chunk)
                    p = scores(pipeline, checked.features)
                    writer.write(pa.table({
                        "row": pa.array(checked.rows, pa.int64()),
                        "transaction_id": pa.array(checked.ids, pa.string(), from_pandas=True),
                        "probability": pa.array(p, pa.float64()),
                        "decision": pa.array(np.where(p >= threshold, "fraud", "legitimate"), pa.string()),
                        "threshold": pa.array(np.full(len(p), threshold), pa.float64()),
                        "model_version": pa.repeat(pa.scalar(model_version, pa.string()), len(p)),
                    }, schema=OUTPUT_SCHEMA))
                    rej.writerows([row, r.field, r.rule, r.message] for row, r in checked.rejects)
                    rows += len(chunk.frame) + len(chunk.unreadable)
                    scored += len(p)
                    rejected += len(checked.rejects)
                    progress(rows, scored, rejected)
        finally:
            writer.close()
        if rows != scored + rejected:
            raise BatchError(f"{rows} rows read but {scored} scored and {rejected} rejected")
        os.replace(partial_out, output)
        os.replace(partial_rej, rejects)
    except BaseException:
        partial_out.unlink(missing_ok=True)
        partial_rej.unlink(missing_ok=True)
        raise
    return BatchResult(rows, scored, rejected, output, rejects)


def _first_row(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """`python -m service.batch` (the project's `batch` hook): `shipyard batch` runs it here, and
    each shard of a batch Job runs it inside the image, on its share of the input, with shipyard's
    shard protocol: `--first-row` numbers the rows as in the whole input, progress goes to stderr
    as JSON lines, and `--summary` is written last, when the outputs are in place."""
    import argparse
    import signal
    import sys
    import time

    from service.model import _rows

    parser = argparse.ArgumentParser(prog="shipyard batch", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="transactions: .csv (header row), .jsonl/.ndjson or .parquet")
    parser.add_argument("output", type=Path, help="predictions to write: .csv or .parquet")
    parser.add_argument("--rejects", type=Path, help="rejects CSV (default: <output stem>.rejects.csv)")
    parser.add_argument("--model", default=os.environ.get("SHIPYARD_MODEL", f"{MODEL_NAME}:latest"),
                        help=f"model tag (default {MODEL_NAME}:latest)")
    parser.add_argument("--chunk-rows", type=_rows, default=CHUNK_ROWS,
                        help=f"rows read, validated and scored at once (default {CHUNK_ROWS}, min 2000)")
    parser.add_argument("--first-row", type=_first_row, default=1,
                        help="the number of the input's first row (a shard of a larger input; default 1)")
    parser.add_argument("--summary", type=Path,
                        help='when done, write {"rows", "scored", "rejected"} here as JSON (a shard\'s completion mark)')
    args = parser.parse_args(argv)
    from service.model import load_from_store

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def progress(rows: int, scored: int, rejected: int) -> None:
        line = json.dumps({"rows": rows, "scored": scored, "rejected": rejected}) if args.summary \
            else f"{rows} rows: {scored} scored, {rejected} rejected"
        print(line, file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, interrupted)
    rejects = args.rejects or args.output.with_name(args.output.stem + ".rejects.csv")
    started = time.monotonic()
    try:
        model = load_from_store(args.model)
        result = score_file(args.input, args.output, rejects, model.pipeline, model.threshold, model.tag,
                            args.chunk_rows, progress, args.first_row)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    seconds = time.monotonic() - started
    if args.summary:
        partial = args.summary.with_name(args.summary.name + ".partial")
        partial.write_text(json.dumps({"rows": result.rows, "scored": result.scored, "rejected": result.rejected,
                                       "model": model.tag, "seconds": round(seconds, 2)}))
        os.replace(partial, args.summary)
    print(f"{result.rows} rows in = {result.scored} scored ({result.output}) + {result.rejected} rejected "
          f"({result.rejects}) in {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
