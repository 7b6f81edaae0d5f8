"""The batch entry point for a project that has none of its own: each row of a file is one request
body for one of the Bento's APIs, validated by that API's own input model and answered by its own
method, in process (no HTTP). A row the API would refuse with a 400 is a reject naming its row,
field and rule; every other row's answer is written with its row number.

It speaks shipyard's shard protocol (shipyard/targets/batch.py), so a batch Job's shards run it in
the Bento's image: `python -m shipyard_serving.batch INPUT OUTPUT --api NAME [--rejects FILE]
[--first-row K] [--summary FILE] [--service SERVICE]`. SERVICE is what `bentoml serve` takes: a
Bento folder (the image's $BENTO_PATH, the default there) or `module:Class` from a project's root.

Inputs: CSV (a header row; a cell becomes the JSON type the API's schema gives its column, an empty
cell a missing field), JSON Lines (one JSON value per line) or Parquet. Outputs: JSON Lines or CSV, one row
per answered row: `row` then the answer's fields (an answer that is not an object: `output`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

INPUTS = (".csv", ".jsonl", ".ndjson", ".parquet")
OUTPUTS = (".jsonl", ".ndjson", ".csv")
PROGRESS_EVERY = 10_000


class BatchInputError(Exception):
    """The input cannot be read at all (as opposed to one row, which is rejected)."""


def _json_kinds(input_spec: Any) -> dict[str, str]:
    """Each top-level field's JSON type (integer, number, boolean, ...) from the API's own schema."""
    schema = input_spec.model_json_schema()
    kinds = {}
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        kind = next((o.get("type") for o in options if o.get("type") not in (None, "null")), None)
        if isinstance(kind, str):
            kinds[name] = kind
    return kinds


_TRUE_FALSE = {"true": True, "false": False, "1": True, "0": False}


def _typed(text: str, kind: str | None) -> Any:
    """A CSV cell as the JSON value its field takes, where it parses; else the text, for the
    schema to reject by name (a strict model refuses "12" for an integer, as it does in JSON)."""
    try:
        if kind == "integer" and text.lstrip("-").isdigit():
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "boolean" and text.lower() in _TRUE_FALSE:
        return _TRUE_FALSE[text.lower()]
    return text


Unreadable = tuple[str, str, str]  # field, rule, message: why a row is not a body at all


def read_rows(source: Path, first_row: int,
              kinds: dict[str, str] | None = None) -> Iterator[tuple[int, Any, Unreadable | None]]:
    """(row number, body, None) per row, or (row number, None, why) for a row that is not a body.
    `kinds` types a CSV's cells (CSV has no types; JSON Lines and Parquet carry their own)."""
    suffix = source.suffix.lower()
    if suffix == ".csv":
        kinds = kinds or {}
        with source.open(newline="", encoding="utf-8", errors="replace") as f:
            for number, record in enumerate(csv.DictReader(f), start=first_row):
                if None in record:  # DictReader files extra cells under None
                    yield number, None, ("row", "extra_cells", f"{len(record[None])} more cells than the header has columns")
                    continue
                yield number, {k: _typed(v, kinds.get(k)) for k, v in record.items() if v not in ("", None)}, None
    elif suffix in (".jsonl", ".ndjson"):
        with source.open("rb") as f:  # bytes: a line of invalid UTF-8 is one reject, not the end of the run
            for number, line in enumerate(f, start=first_row):
                try:
                    yield number, json.loads(line), None
                except ValueError as exc:
                    yield number, None, ("line", "json_invalid", str(exc)[:200] if line.strip() else "empty line")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        number = first_row
        for batch in pq.ParquetFile(source).iter_batches():
            for record in batch.to_pylist():
                yield number, {k: v for k, v in record.items() if v is not None}, None
                number += 1
    else:
        raise BatchInputError(f"{source}: unsupported input format {suffix or '(none)'}; use {', '.join(INPUTS)}")


def load_api(service: str, api: str | None) -> tuple[Any, Any, str]:
    """The API's descriptor, a callable answering one validated body, and the API's name."""
    import bentoml

    svc = bentoml.load(service)
    if api is None:
        if len(svc.apis) != 1:
            raise BatchInputError(f"--api: {svc.name} has {len(svc.apis)} APIs; name one of {', '.join(svc.apis)}")
        api = next(iter(svc.apis))
    if api not in svc.apis:
        raise BatchInputError(f"--api: {svc.name} has no API {api!r}; its APIs are {', '.join(svc.apis)}")
    method = svc.apis[api]
    call = getattr(svc().to_sync, api)
    root = getattr(method.input_spec, "__root_input__", False)

    def answer(validated: Any) -> Any:
        if root:  # the whole body is the one (positional) argument, as BentoML's HTTP app passes it
            return call(validated.root if hasattr(validated, "root") else validated)
        return call(**{k: getattr(validated, k) for k in type(validated).model_fields})

    return method, answer, api


def _rejection(exc: Exception) -> tuple[str, str, str]:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "root"]
        return ".".join(loc) or "body", first.get("type", "invalid"), first.get("msg", str(exc))[:300]
    return "body", "invalid", str(exc)[:300]


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Writer:
    """Answers as JSON Lines or CSV (columns from the first answer; nested values as JSON)."""

    def __init__(self, path: Path, as_csv: bool) -> None:
        self.csv = as_csv
        self.file = path.open("w", newline="")
        self.columns: list[str] | None = None
        self.writer: Any = None

    def write(self, row: int, answer: Any) -> None:
        record = {"row": row, **answer} if isinstance(answer, dict) else {"row": row, "output": answer}
        if not self.csv:
            self.file.write(json.dumps(record) + "\n")
            return
        if self.writer is None:
            self.columns = list(record)
            self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="raise")
            self.writer.writeheader()
        self.writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items()})

    def close(self) -> None:
        self.file.close()


def score_file(source: Path, output: Path, rejects: Path, method: Any, answer: Any, first_row: int = 1,
               progress: Any = lambda *_: None) -> tuple[int, int, int]:
    """Every row answered or rejected; outputs renamed into place only when the counts agree."""
    if output.suffix.lower() not in OUTPUTS:
        raise BatchInputError(f"{output}: unsupported output format {output.suffix or '(none)'}; "
                              f"use {', '.join(OUTPUTS)}")
    if not source.is_file():
        raise BatchInputError(f"input {source} does not exist")
    from pydantic import ValidationError

    partial_out, partial_rej = output.with_name(output.name + ".partial"), rejects.with_name(rejects.name + ".partial")
    rows = scored = rejected = 0
    try:
        writer = _Writer(partial_out, output.suffix.lower() == ".csv")
        try:
            with partial_rej.open("w", newline="") as rej_file:
                rej = csv.writer(rej_file)
                rej.writerow(["row", "field", "rule", "message"])
                for number, body, unreadable in read_rows(source, first_row, _json_kinds(method.input_spec)):
                    rows += 1
                    if unreadable is not None:
                        rej.writerow([number, *unreadable])
                        rejected += 1
                        continue
                    try:
                        validated = method.input_spec.model_validate(body)
                    except (ValidationError, ValueError, TypeError) as exc:
                        rej.writerow([number, *_rejection(exc)])
                        rejected += 1
                        continue
                    writer.write(number, _plain(answer(validated)))
                    scored += 1
                    if rows % PROGRESS_EVERY == 0:
                        progress(rows, scored, rejected)
        finally:
            writer.close()
        if rows != scored + rejected:
            raise BatchInputError(f"{rows} rows read but {scored} answered and {rejected} rejected")
        progress(rows, scored, rejected)
        os.replace(partial_out, output)
        os.replace(partial_rej, rejects)
    except BaseException:
        partial_out.unlink(missing_ok=True)
        partial_rej.unlink(missing_ok=True)
        raise
    return rows, scored, rejected


def _first_row(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard_serving.batch", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="request bodies: .csv (header row), .jsonl/.ndjson or .parquet")
    parser.add_argument("output", type=Path, help="answers to write: .jsonl or .csv")
    parser.add_argument("--api", help="the API each row is a body for (default: the service's only API)")
    parser.add_argument("--service", default=os.environ.get("BENTO_PATH"),
                        help="a Bento folder or module:Class (default: $BENTO_PATH, set in a Bento's image)")
    parser.add_argument("--rejects", type=Path, help="rejects CSV (default: <output stem>.rejects.csv)")
    parser.add_argument("--first-row", type=_first_row, default=1, help="the number of the input's first row")
    parser.add_argument("--summary", type=Path, help="when done, write the counts here as JSON")
    args = parser.parse_args(argv)
    if not args.service:
        parser.error("--service: name the Bento folder or module:Class (no $BENTO_PATH here)")
    rejects = args.rejects or args.output.with_name(args.output.stem + ".rejects.csv")

    def progress(rows: int, scored: int, rejected: int) -> None:  # JSON lines for a shard, text for a person
        line = json.dumps({"rows": rows, "scored": scored, "rejected": rejected}) if args.summary \
            else f"{rows} rows: {scored} answered, {rejected} rejected"
        print(line, file=sys.stderr, flush=True)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    try:
        method, answer, api = load_api(args.service, args.api)
        rows, scored, rejected = score_file(args.input, args.output, rejects, method, answer, args.first_row, progress)
    except BatchInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    seconds = time.monotonic() - started
    if args.summary:
        partial = args.summary.with_name(args.summary.name + ".partial")
        partial.write_text(json.dumps({"rows": rows, "scored": scored, "rejected": rejected, "api": api,
                                       "seconds": round(seconds, 2)}))
        os.replace(partial, args.summary)
    print(f"{rows} rows in = {scored} answered by {api} ({args.output}) + {rejected} rejected ({rejects}) "
          f"in {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
