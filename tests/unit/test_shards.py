"""Splitting inputs into shards and merging shard outputs: every row once, in order, counted."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.shards import Shard, ShardError, merge, read_manifest, split, write_manifest


def csv_text(rows: int) -> str:
    return "id,note\n" + "".join(f"t{i},n{i}\n" for i in range(1, rows + 1))


def test_csv_is_split_into_near_equal_shards_each_with_the_header(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(csv_text(10))
    shards = split(source, 4, tmp_path / "s")
    assert [(s.index, s.first_row, s.rows) for s in shards] == [(0, 1, 3), (1, 4, 3), (2, 7, 3), (3, 10, 1)]
    for shard in shards:
        lines = (tmp_path / "s" / f"{shard.index}.csv").read_text().splitlines()
        assert lines[0] == "id,note"
        assert lines[1:] == [f"t{i},n{i}" for i in range(shard.first_row, shard.first_row + shard.rows)]


def test_a_quoted_newline_does_not_split_a_csv_record(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,note\nt1,"two\nlines"\nt2,"say ""hi"""\nt3,x\nt4,y\n')
    shards = split(source, 2, tmp_path / "s")
    texts = [(tmp_path / "s" / f"{s.index}.csv").read_text() for s in shards]
    assert sum(s.rows for s in shards) == 4
    assert 't1,"two\nlines"\n' in texts[0]
    assert "".join(t.split("\n", 1)[1] for t in texts) == source.read_text().split("\n", 1)[1]


def test_a_quote_inside_an_unquoted_field_is_a_literal_as_pandas_reads_it(tmp_path):
    import pandas as pd

    source = tmp_path / "in.csv"
    source.write_bytes(b'id,note\nt1,5" screen\nt2,ok\nt3,"a ""b""\nc"\nt4,x\n')
    shards = split(source, 2, tmp_path / "s")
    assert sum(s.rows for s in shards) == len(pd.read_csv(source)) == 4
    assert [len(pd.read_csv(tmp_path / "s" / f"{s.index}.csv")) for s in shards] == [s.rows for s in shards]


def test_blank_lines_before_the_header_are_skipped(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"\n\nid,note\nt1,a\nt2,b\n")
    assert split(source, 1, tmp_path / "s") == [Shard(0, 1, 2)]
    assert (tmp_path / "s" / "0.csv").read_bytes() == b"id,note\nt1,a\nt2,b\n"


def test_blank_lines_are_no_csv_records(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,note\nt1,a\n\nt2,b\r\n\r\nt3,c\n")
    shards = split(source, 1, tmp_path / "s")
    assert shards == [Shard(0, 1, 3)]
    assert (tmp_path / "s" / "0.csv").read_bytes() == b"id,note\nt1,a\nt2,b\r\nt3,c\n"


def test_json_lines_keep_blank_and_unreadable_lines_as_rows(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n\nnot json\n{"a": 4}\n{"a": 5}')  # no newline at the end
    shards = split(source, 2, tmp_path / "s")
    assert [(s.first_row, s.rows) for s in shards] == [(1, 3), (4, 2)]
    assert (tmp_path / "s" / "1.jsonl").read_text() == '{"a": 4}\n{"a": 5}'


def test_parquet_is_split_by_rows_and_keeps_its_schema(tmp_path):
    source = tmp_path / "in.parquet"
    table = pa.table({"id": [f"t{i}" for i in range(1000)], "x": list(range(1000))})
    pq.write_table(table, source, row_group_size=128)
    shards = split(source, 3, tmp_path / "s")
    assert [(s.first_row, s.rows) for s in shards] == [(1, 334), (335, 334), (669, 332)]
    parts = [pq.read_table(tmp_path / "s" / f"{s.index}.parquet") for s in shards]
    assert pa.concat_tables(parts).equals(table)


def test_fewer_rows_than_shards_gives_fewer_shards_and_an_empty_input_one(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text(csv_text(2))
    assert [s.rows for s in split(small, 4, tmp_path / "a")] == [1, 1]
    empty = tmp_path / "empty.csv"
    empty.write_text("id,note\n")
    assert split(empty, 4, tmp_path / "b") == [Shard(0, 1, 0)]
    assert (tmp_path / "b" / "0.csv").read_text() == "id,note\n"


def test_the_manifest_round_trips(tmp_path):
    shards = [Shard(0, 1, 5), Shard(1, 6, 4)]
    write_manifest(shards, tmp_path / "m.json")
    assert read_manifest((tmp_path / "m.json").read_text()) == shards


def shard_outputs(folder, shards, scored_rows, rejected_rows, summaries=None):
    folder.mkdir(exist_ok=True)
    for shard, scored, rejected in zip(shards, scored_rows, rejected_rows):
        (folder / f"{shard.index}.csv").write_text("row,score\n" + "".join(f"{r},0.5\n" for r in scored))
        (folder / f"{shard.index}.rejects.csv").write_text("row,field,rule,message\n"
                                                            + "".join(f"{r},f,rule,m\n" for r in rejected))
        summary = (summaries or {}).get(shard.index, {"rows": shard.rows, "scored": len(scored),
                                                      "rejected": len(rejected)})
        (folder / f"{shard.index}.json").write_text(json.dumps(summary))


def test_merge_concatenates_in_shard_order_with_one_header(tmp_path):
    shards = [Shard(0, 1, 3), Shard(1, 4, 3)]
    shard_outputs(tmp_path / "out", shards, [[1, 3], [4, 5, 6]], [[2], []])
    merged = merge(shards, tmp_path / "out", tmp_path / "all.csv", tmp_path / "all.rejects.csv")
    assert (merged.rows, merged.scored, merged.rejected) == (6, 5, 1)
    assert (tmp_path / "all.csv").read_text() == "row,score\n1,0.5\n3,0.5\n4,0.5\n5,0.5\n6,0.5\n"
    assert (tmp_path / "all.rejects.csv").read_text() == "row,field,rule,message\n2,f,rule,m\n"


def test_an_empty_shard_output_adds_nothing_and_different_columns_are_refused(tmp_path):
    shards = [Shard(0, 1, 1), Shard(1, 2, 2)]
    out = tmp_path / "out"
    shard_outputs(out, shards, [[], [2, 3]], [[1], []])
    (out / "0.csv").write_bytes(b"")  # a shard that answered nothing wrote no header either
    merged = merge(shards, out, tmp_path / "all.csv", tmp_path / "all.rejects.csv")
    assert merged.scored == 2 and (tmp_path / "all.csv").read_text() == "row,score\n2,0.5\n3,0.5\n"
    (out / "0.csv").write_text("row,other\n")
    with pytest.raises(ShardError, match="cannot be merged"):
        merge(shards, out, tmp_path / "again.csv", tmp_path / "again.rejects.csv")


def test_merge_of_parquet_outputs(tmp_path):
    shards = [Shard(0, 1, 2), Shard(1, 3, 2)]
    out = tmp_path / "out"
    shard_outputs(out, shards, [[1, 2], [3]], [[], [4]])
    for shard, rows in zip(shards, ([1, 2], [3])):
        pq.write_table(pa.table({"row": rows}), out / f"{shard.index}.parquet")
    merged = merge(shards, out, tmp_path / "all.parquet", tmp_path / "all.rejects.csv")
    assert merged.scored == 3 and pq.read_table(tmp_path / "all.parquet")["row"].to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("summaries, message", [
    ({1: {"rows": 2, "scored": 2, "rejected": 0}}, "shard 1 was given 3 rows but read 2"),
    ({1: {"rows": 3, "scored": 3, "rejected": 1}}, "shard 1 read 3 rows but scored 3 and rejected 1"),
    ({1: {"rows": 3, "scored": 2, "rejected": 1}}, "the shards reported 4 scored and 2 rejected rows but their "
                                                   "files hold 5 and 1"),
    ({1: {"rows": "many"}}, "shard 1: its summary 1.json is not"),
])
def test_merge_refuses_counts_that_do_not_add_up_and_writes_nothing(tmp_path, summaries, message):
    shards = [Shard(0, 1, 3), Shard(1, 4, 3)]
    shard_outputs(tmp_path / "out", shards, [[1, 3], [4, 5, 6]], [[2], []], summaries)
    with pytest.raises(ShardError, match=message):
        merge(shards, tmp_path / "out", tmp_path / "all.csv", tmp_path / "all.rejects.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_shard_without_a_summary_did_not_finish(tmp_path):
    shards = [Shard(0, 1, 1)]
    shard_outputs(tmp_path / "out", shards, [[1]], [[]])
    (tmp_path / "out" / "0.json").unlink()
    with pytest.raises(ShardError, match="shard 0 wrote no summary"):
        merge(shards, tmp_path / "out", tmp_path / "all.csv", tmp_path / "all.rejects.csv")

