"""The column-wise check may only be stricter than the schema, never looser: fuzzed against
pydantic on typed frames, and batch's verdict per row equals the schema's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.batch import Chunk, validate_chunk
from service.frames import certainly_valid, record
from service.schemas import Transaction
from tests.conftest import VALID_TRANSACTION

# Values near and across each rule's edges, and of the wrong types.
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 40_000),
                    st.sampled_from([0, 0.0, -0.0, 23, 24, 1000, 1001, 20_038, 20_038.5, 36_500, 36_501, 1e6, 1e6 + 1]))
TEXT = st.one_of(st.sampled_from(["USD", "usd", "XXX", "5411", "541", "54111", "DE", "de", "D1", "", "tx-1", "-x",
                                  "a" * 64, "a" * 65, "5411\n", "DE\n"]), st.text(max_size=5))
ANY = st.one_of(NUMBERS, TEXT, st.booleans(), st.none())
FIELD_VALUES = {name: st.one_of(st.just(value), ANY) for name, value in VALID_TRANSACTION.items()}


def schema_accepts(rec: dict) -> bool:
    try:
        Transaction.model_validate(rec)
        return True
    except ValidationError:
        return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries(FIELD_VALUES), min_size=1, max_size=20))
def test_certainly_valid_rows_are_valid_for_the_schema(rows):
    for column_type in (None, "typed"):
        frame = pd.DataFrame.from_records(rows)
        if column_type:
            frame = frame.infer_objects()
        mask = certainly_valid(frame)
        for i in np.flatnonzero(mask):
            assert schema_accepts(record(frame.iloc[i].to_dict())), frame.iloc[i].to_dict()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries(FIELD_VALUES), min_size=1, max_size=20))
def test_batch_accepts_exactly_what_the_schema_accepts(rows):
    chunk = Chunk(np.arange(1, len(rows) + 1), pd.DataFrame.from_records(rows), rows)
    checked = validate_chunk(chunk)
    accepted = {int(r) for r in checked.rows}
    assert accepted == {i + 1 for i, row in enumerate(rows) if schema_accepts(row)}
    assert {r for r, _ in checked.rejects} == {i + 1 for i, row in enumerate(rows) if not schema_accepts(row)}


def test_clean_typed_frames_take_the_fast_path():
    frame = pd.DataFrame([VALID_TRANSACTION] * 3)
    assert certainly_valid(frame).all()
    frame.loc[1, "hour"] = 24
    frame.loc[2, "currency"] = "XXX"
    assert certainly_valid(frame).tolist() == [True, False, False]
    assert math.isnan(record({"amount": float("nan")})["amount"]) and record({"country": float("nan")}) == {}


def test_one_dirty_cell_does_not_send_its_columns_clean_rows_to_pydantic():
    rows = [dict(VALID_TRANSACTION) for _ in range(4)]
    rows[1]["amount"], rows[2]["hour"], rows[3]["card_present"] = "nan", "25", "maybe"
    frame = pd.DataFrame.from_records(rows).astype({"amount": object, "hour": object, "card_present": object})
    assert certainly_valid(frame).tolist() == [True, False, False, False]
    assert certainly_valid(frame.iloc[[0, 0, 0]].reset_index(drop=True)).all()


def test_an_integer_beyond_floats_range_goes_to_pydantic_instead_of_failing_the_chunk():
    rows = [dict(VALID_TRANSACTION), dict(VALID_TRANSACTION)]
    rows[1]["amount"] = 10 ** 400
    frame = pd.DataFrame.from_records(rows).astype({"amount": object})
    assert certainly_valid(frame).tolist() == [True, False]
