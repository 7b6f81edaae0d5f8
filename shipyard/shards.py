"""Splitting a batch input into shards and merging the shards' outputs back, nothing lost.

Why the toolkit splits rather than each shard picking its rows from the whole file: a shard then
reads only its own bytes (a CSV has no index to seek by row), the project's batch entry point
stays a plain "score this file" command, and the toolkit knows every shard's row count before
anything runs, so the merge can check each shard against what it was given.

A shard's rows keep their numbers in the whole input: shard i starts at `first_row` (the entry
point's `--first-row`), so rejects name the row the user can find in their own file. A row is
what the project's reader counts: a CSV record after the header (blank lines are none), a JSON
Lines line (blank and unreadable ones included: the entry point rejects them by line number), a
Parquet row.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

INPUTS = (".csv", ".jsonl", ".ndjson", ".parquet")
OUTPUTS = (".csv", ".jsonl", ".ndjson", ".parquet")
REJECTS_SUFFIX = ".rejects.csv"
_COPY_BYTES = 1 << 20


class ShardError(Exception):
    """The input cannot be split, or the shards' outputs do not account for every row."""


@dataclass(frozen=True)
class Shard:
    index: int
    first_row: int  # the number of its first row in the whole input (1-based)
    rows: int


@dataclass(frozen=True)
class ShardSummary:
    """What a shard's entry point reports in its summary file when its outputs are in place."""

    rows: int
    scored: int
    rejected: int


@dataclass(frozen=True)
class Merged:
    rows: int
    scored: int
    rejected: int


def check_formats(source: Path, output: Path) -> None:
    if source.suffix.lower() not in INPUTS:
        raise ShardError(f"{source}: unsupported input format {source.suffix or '(none)'}; use {', '.join(INPUTS)}")
    if output.suffix.lower() not in OUTPUTS:
        raise ShardError(f"{output}: unsupported output format {output.suffix or '(none)'}; use {', '.join(OUTPUTS)}")
    if not source.is_file():
        raise ShardError(f"input {source} does not exist")


def _ends_quoted(line: bytes, inside: bool) -> bool:
    """Whether a CSV line ends inside a quoted field, read as pandas and the csv module read it: a
    quote opens a quoted field only at the field's start (a quote inside `5" screen` is a literal),
    and inside one, `""` is a quote and a lone quote closes it. Only the quotes are visited."""
    at = line.find(b'"')
    while at != -1:
        if inside:
            if line[at + 1:at + 2] == b'"':
                at = line.find(b'"', at + 2)
                continue
            inside = False
        elif at == 0 or line[at - 1:at] == b",":
            inside = True
        at = line.find(b'"', at + 1)
    return inside


def _csv_records(f: BinaryIO) -> Iterator[bytes]:
    """A CSV file's records as raw bytes: a newline inside a quoted field does not end a record."""
    pending: list[bytes] = []
    inside = False
    for line in f:
        if not inside and b'"' not in line:
            yield line
            continue
        pending.append(line)
        inside = _ends_quoted(line, inside)
        if not inside:
            yield b"".join(pending) if len(pending) > 1 else line
            pending = []
    if pending:
        yield b"".join(pending)


def _is_blank(record: bytes) -> bool:
    return not record.strip(b"\r\n")


def _count_lines(path: Path) -> int:
    count = 0
    last = b"\n"
    with path.open("rb") as f:
        while block := f.read(_COPY_BYTES):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _split_lines(source: Path, shards: int, into: Path, header: bool) -> list[Shard]:
    """CSV records or JSON Lines lines, copied byte for byte into `shards` files of near-equal
    row counts (sized from the newline count, so one pass does it; the last takes any rest)."""
    estimate = max(0, _count_lines(source) - (1 if header else 0))
    per_shard = max(1, math.ceil(estimate / shards))
    result: list[Shard] = []
    with source.open("rb") as f:
        records = _csv_records(f) if header else iter(f)
        head = b""
        if header:  # blank lines before the header are skipped, as pandas does
            head = next(records, b"")
            while head and _is_blank(head):
                head = next(records, b"")
        index, rows, first_row = 0, 0, 1
        out = (into / f"{index}{source.suffix.lower()}").open("wb")
        out.write(head)
        try:
            for record in records:
                if header and _is_blank(record):
                    continue  # a blank line is no CSV record (pandas and the csv module skip it too)
                if rows == per_shard and index < shards - 1:
                    out.close()
                    result.append(Shard(index, first_row, rows))
                    index, first_row, rows = index + 1, first_row + rows, 0
                    out = (into / f"{index}{source.suffix.lower()}").open("wb")
                    out.write(head)
                out.write(record)
                rows += 1
        finally:
            out.close()
        result.append(Shard(index, first_row, rows))
    return result


def _split_parquet(source: Path, shards: int, into: Path) -> list[Shard]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(source)
    total = file.metadata.num_rows
    per_shard = max(1, math.ceil(total / shards))
    result: list[Shard] = []
    first_row = 1
    batches = file.iter_batches(batch_size=min(per_shard, 65_536))
    pending = None
    for index in range(shards):
        rows = 0
        with pq.ParquetWriter(str(into / f"{index}.parquet"), file.schema_arrow) as writer:
            while rows < per_shard or index == shards - 1:
                batch = pending if pending is not None else next(batches, None)
                pending = None
                if batch is None:
                    break
                take = batch.num_rows if index == shards - 1 else min(batch.num_rows, per_shard - rows)
                writer.write_batch(batch.slice(0, take))
                if take < batch.num_rows:
                    pending = batch.slice(take)
                rows += take
        result.append(Shard(index, first_row, rows))
        first_row += rows
        if first_row > total:
            break
    return result


def split(source: Path, shards: int, into: Path) -> list[Shard]:
    """Writes `into/<i><suffix>` for each shard and returns them in order. Fewer shards than asked
    when the input has fewer rows; at least one, even for an empty input (its outputs are then
    empty, and the counts still have to agree)."""
    if shards < 1:
        raise ShardError(f"shards: must be at least 1 (got {shards})")
    into.mkdir(parents=True, exist_ok=True)
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        return _split_parquet(source, shards, into)
    return _split_lines(source, shards, into, header=suffix == ".csv")


def write_manifest(shards: list[Shard], path: Path) -> None:
    path.write_text(json.dumps([asdict(s) for s in shards]))


def read_manifest(text: str) -> list[Shard]:
    return [Shard(**s) for s in json.loads(text)]


def read_summary(path: Path, shard: Shard) -> ShardSummary:
    """A shard's summary, checked against what the shard was given."""
    if not path.is_file():
        raise ShardError(f"shard {shard.index} wrote no summary ({path.name}): it did not finish")
    try:
        data = json.loads(path.read_text())
        summary = ShardSummary(int(data["rows"]), int(data["scored"]), int(data["rejected"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"shard {shard.index}: its summary {path.name} is not "
                         '{"rows": n, "scored": n, "rejected": n}') from exc
    if summary.rows != shard.rows:
        raise ShardError(f"shard {shard.index} was given {shard.rows} rows but read {summary.rows}")
    if summary.rows != summary.scored + summary.rejected:
        raise ShardError(f"shard {shard.index} read {summary.rows} rows but scored {summary.scored} "
                         f"and rejected {summary.rejected}")
    return summary


def _append_lines(parts: list[Path], target: BinaryIO, header: bool) -> int:
    """Concatenates line-based files, one header kept; returns the records. A part that is empty
    (a shard with nothing to write) adds nothing; parts whose headers differ are refused, since
    their columns would not line up."""
    import csv
    import shutil

    records = 0
    kept: bytes | None = None
    for part in parts:
        with part.open("rb") as f:
            head = next(_csv_records(f), b"") if header else b""
            if header and not head:
                continue
            if kept is None:
                kept = head
                target.write(head if head.endswith(b"\n") else head + b"\n")
            elif head.rstrip(b"\r\n") != kept.rstrip(b"\r\n"):
                raise ShardError(f"{part.name} has the columns {head.decode(errors='replace').strip()!r}, "
                                 f"the first shard {kept.decode(errors='replace').strip()!r}: they cannot be merged")
            start = f.tell()
            shutil.copyfileobj(f, target, _COPY_BYTES)
            if f.tell() > start:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    target.write(b"\n")
        if header:
            with part.open(newline="", encoding="utf-8", errors="replace") as text:
                rows = csv.reader(text)
                next(rows, None)
                records += sum(1 for row in rows if row)
        else:
            with part.open("rb") as raw:
                records += sum(1 for _ in raw)
    return records


def _append_parquet(parts: list[Path], target: Path) -> int:
    import pyarrow.parquet as pq

    records = 0
    writer = None
    try:
        for part in parts:
            file = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(str(target), file.schema_arrow)
            for group in range(file.num_row_groups):
                table = file.read_row_group(group)
                writer.write_table(table)
                records += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return records


def merge(shards: list[Shard], outputs: Path, output: Path, rejects: Path) -> Merged:
    """Merges `outputs/<i><output suffix>` and `outputs/<i>.rejects.csv` in shard order into
    `output` and `rejects`. Every count is checked (each shard against its input, the merged files
    against the summaries) before either file is renamed into place."""
    suffix = output.suffix.lower()
    summaries = [read_summary(outputs / f"{s.index}.json", s) for s in shards]
    scored, rejected = sum(s.scored for s in summaries), sum(s.rejected for s in summaries)
    missing = [p.name for s in shards for p in (outputs / f"{s.index}{suffix}", outputs / f"{s.index}{REJECTS_SUFFIX}")
               if not p.is_file()]
    if missing:
        raise ShardError(f"the shards' outputs are incomplete: {', '.join(missing)} missing")
    partial_out, partial_rej = output.with_name(output.name + ".partial"), rejects.with_name(rejects.name + ".partial")
    try:
        if suffix == ".parquet":
            written = _append_parquet([outputs / f"{s.index}{suffix}" for s in shards], partial_out)
        else:
            with partial_out.open("wb") as f:
                written = _append_lines([outputs / f"{s.index}{suffix}" for s in shards], f, header=suffix == ".csv")
        with partial_rej.open("wb") as f:
            written_rejects = _append_lines([outputs / f"{s.index}{REJECTS_SUFFIX}" for s in shards], f, header=True)
        if written != scored or written_rejects != rejected:
            raise ShardError(f"the shards reported {scored} scored and {rejected} rejected rows but their files hold "
                             f"{written} and {written_rejects}")
        os.replace(partial_out, output)
        os.replace(partial_rej, rejects)
    except BaseException:
        partial_out.unlink(missing_ok=True)
        partial_rej.unlink(missing_ok=True)
        raise
    return Merged(sum(s.rows for s in summaries), scored, rejected)

