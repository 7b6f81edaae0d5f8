"""Validating many transactions at once, with the schema as the only judge.

Batch and stream modes see thousands of rows per call; validating each with pydantic costs more
than scoring it. So a column-wise check, *derived from the pydantic model's own constraints*,
clears the rows that are certainly valid, and every other row goes to `Transaction.model_validate`,
which either accepts it or rejects it with the same field, rule and message as the real-time API.
The column check may only be stricter than the schema, never looser (tests/unit/test_frames.py
fuzzes it against pydantic), so the modes cannot disagree about what is valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from service.schemas import FEATURES, Transaction

ID = "transaction_id"
COLUMNS: tuple[str, ...] = (ID, *FEATURES)


@dataclass(frozen=True)
class _Rule:
    kind: Literal["float", "int", "bool", "str"]
    required: bool
    bounds: tuple[tuple[str, float], ...] = ()
    pattern: str | None = None
    choices: tuple[str, ...] = ()


def _rules() -> dict[str, _Rule]:
    """Each field's type and constraints, read from the pydantic model (never restated here)."""
    rules = {}
    for name, info in Transaction.model_fields.items():
        annotation = info.annotation
        choices: tuple[str, ...] = ()
        if get_origin(annotation) is Literal:
            choices, kind = tuple(get_args(annotation)), "str"
        else:
            base = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
            kind = {float: "float", int: "int", bool: "bool", str: "str"}[base[0]]
        bounds, pattern = [], None
        for meta in info.metadata:
            for op in ("gt", "ge", "lt", "le"):
                if getattr(meta, op, None) is not None:
                    bounds.append((op, float(getattr(meta, op))))
            pattern = getattr(meta, "pattern", None) or pattern
        rules[name] = _Rule(kind, info.is_required(), tuple(bounds), pattern, choices)
    return rules


RULES = _rules()
_OPS = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}


def _column_ok(values: pd.Series, rule: _Rule) -> np.ndarray:
    """Rows whose value certainly passes the rule; False sends a row to pydantic, never rejects."""
    n = len(values)
    kind = values.dtype.kind
    if kind == "O" and rule.kind in ("float", "int", "bool"):
        # A column with a few dirty cells holds Python objects: its clean cells (exactly the
        # schema's type) still take the fast path, so one bad row does not send its whole chunk
        # to pydantic. bool is not an int here (pydantic's strict int refuses it).
        allowed = {"float": (float, int), "int": (int,), "bool": (bool,)}[rule.kind]
        types = values.map(type).to_numpy()
        typed = np.zeros(n, dtype=bool)
        for t in allowed:
            typed |= types == t
        if rule.kind == "bool" or not typed.any():
            return typed
        try:
            data = values.to_numpy()[typed].astype(float)
        except OverflowError:  # an int beyond float's range: NaN here, so pydantic judges that row
            data = np.array([_as_float(v) for v in values.to_numpy()[typed]])
        clean = np.isfinite(data)
        for op, bound in rule.bounds:
            clean &= _OPS[op](data, bound)
        ok = np.zeros(n, dtype=bool)
        ok[typed] = clean
        return ok
    if rule.kind == "float" or rule.kind == "int":
        if (rule.kind == "float" and kind not in "fiu") or (rule.kind == "int" and kind not in "iu"):
            return np.zeros(n, dtype=bool)
        data = values.to_numpy()
        ok = np.isfinite(data) if kind == "f" else np.ones(n, dtype=bool)
        for op, bound in rule.bounds:
            ok &= _OPS[op](data, bound)
        return ok
    if rule.kind == "bool":
        return np.full(n, kind == "b")
    # strings: only real str objects pass; patterns and choices are checked on the few distinct
    # values of categorical columns, and with RE2 (end-anchored like pydantic's regex) otherwise.
    if kind != "O":
        return np.zeros(n, dtype=bool)
    try:
        array = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return np.zeros(n, dtype=bool)
    ok = pc.is_valid(array)
    if rule.choices:
        ok = pc.and_(ok, pc.is_in(array, value_set=pa.array(rule.choices)))
    if rule.pattern:
        ok = pc.and_(ok, pc.match_substring_regex(array, rule.pattern))
    return ok.fill_null(False).to_numpy(zero_copy_only=False)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.nan


def certainly_valid(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows the schema would accept as they are (a sound under-approximation)."""
    ok = np.ones(len(frame), dtype=bool)
    for name, rule in RULES.items():
        if name in frame.columns:
            missing = frame[name].isna().to_numpy()
            ok &= _column_ok(frame[name], rule) | (missing if not rule.required else False)
        elif rule.required:
            return np.zeros(len(frame), dtype=bool)
    extra = [c for c in frame.columns if c not in RULES]
    for name in extra:  # a value in a column the schema does not know is pydantic's to reject
        ok &= frame[name].isna().to_numpy()
    return ok


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A frame row as the schema expects it: numpy scalars as Python's, missing cells absent.

    A NaN is a missing cell except in a float column, where it is the value NaN (which the schema
    rejects as not finite): readers turn missing numbers into None, which is always absent."""
    out = {}
    for key, value in row.items():
        if value is None or value is pd.NA:
            continue
        if isinstance(value, float) and math.isnan(value) and (key not in RULES or RULES[key].kind != "float"):
            continue
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


@dataclass(frozen=True)
class Rejection:
    field: str
    rule: str
    message: str


def judge(records: Iterable[dict[str, Any]]) -> list[Transaction | Rejection]:
    """pydantic's verdict per record: the transaction, or the first error as field/rule/message."""
    verdicts: list[Transaction | Rejection] = []
    for rec in records:
        try:
            verdicts.append(Transaction.model_validate(rec))
        except ValidationError as exc:
            first = exc.errors()[0]
            verdicts.append(Rejection(".".join(str(p) for p in first["loc"]) or "row", first["type"], first["msg"]))
    return verdicts
