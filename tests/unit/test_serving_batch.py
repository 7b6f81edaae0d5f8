"""The generic batch entry point's reading and judging, without a service: CSV cells typed by the
API's own schema, unreadable lines and invalid bodies named by row, field and rule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard_serving.batch import _json_kinds, _rejection, read_rows


class Body(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str
    count: int = Field(ge=0)
    ratio: float | None = None
    urgent: bool = False


def test_csv_cells_take_the_json_type_their_field_has(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("name,count,ratio,urgent\na,3,0.5,true\nb,three,,0\n")
    rows = list(read_rows(source, first_row=10, kinds=_json_kinds(Body)))
    assert rows == [(10, {"name": "a", "count": 3, "ratio": 0.5, "urgent": True}, None),
                    (11, {"name": "b", "count": "three", "urgent": False}, None)]
    assert Body.model_validate(rows[0][1]).count == 3
    try:
        Body.model_validate(rows[1][1])
    except ValidationError as exc:
        assert _rejection(exc) == ("count", "int_type", "Input should be a valid integer")
    else:
        raise AssertionError("a strict integer field took 'three'")


def test_json_lines_that_are_not_json_are_rows_with_a_reason(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"name": "a", "count": 1}\n\nnope\n')
    source.write_bytes(source.read_bytes() + b'{"name": "\xff"}\n')
    rows = list(read_rows(source, first_row=1))
    assert rows[0] == (1, {"name": "a", "count": 1}, None)
    assert rows[1] == (2, None, ("line", "json_invalid", "empty line"))
    assert rows[2][0] == 3 and rows[2][2][:2] == ("line", "json_invalid")
    assert rows[3][0] == 4 and rows[3][2][:2] == ("line", "json_invalid")  # invalid UTF-8: one row, not the run


def test_a_short_csv_row_lacks_fields_and_a_long_one_is_refused(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("name,count\na\nb,1,extra\n")
    rows = list(read_rows(source, first_row=1, kinds=_json_kinds(Body)))
    assert rows[0] == (1, {"name": "a"}, None)
    assert rows[1] == (2, None, ("row", "extra_cells", "1 more cells than the header has columns"))
