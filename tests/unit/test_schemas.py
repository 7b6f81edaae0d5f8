"""Transaction and Score accept exactly what the contract allows, at every boundary."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from service.schemas import FEATURES, MAX_BATCH_ITEMS, Score, Transaction, TransactionList
from tests.conftest import VALID_TRANSACTION


def with_(**changes):
    return {**VALID_TRANSACTION, **changes}


def rejected_rule(data) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate(data)
    err = info.value.errors()[0]
    return ".".join(map(str, err["loc"])), err["type"]


def test_valid_transaction_round_trips_through_json():
    tx = Transaction.model_validate(VALID_TRANSACTION)
    assert Transaction.model_validate_json(tx.model_dump_json()) == tx


@pytest.mark.parametrize(
    "field,value",
    [
        ("amount", 0.01), ("amount", 1_000_000), ("hour", 0), ("hour", 23),
        ("distance_from_home_km", 0), ("distance_from_home_km", 20_038),
        ("transactions_last_24h", 0), ("transactions_last_24h", 1000),
        ("account_age_days", 0), ("account_age_days", 36_500),
        ("avg_amount_30d", 0), ("merchant_category", "0000"), ("country", "ZZ"),
        ("transaction_id", "a" * 64), ("transaction_id", None),
    ],
)
def test_boundaries_accepted(field, value):
    assert getattr(Transaction.model_validate(with_(**{field: value})), field) == value


@pytest.mark.parametrize(
    "field,value,rule",
    [
        ("amount", 0, "greater_than"),
        ("amount", -5.0, "greater_than"),
        ("amount", 1_000_000.01, "less_than_equal"),
        ("amount", math.nan, "finite_number"),
        ("amount", math.inf, "finite_number"),
        ("amount", "42.5", "float_type"),
        ("hour", -1, "greater_than_equal"),
        ("hour", 24, "less_than_equal"),
        ("hour", 3.5, "int_type"),
        ("hour", True, "int_type"),
        ("card_present", "yes", "bool_type"),
        ("card_present", 1, "bool_type"),
        ("currency", "XXX", "literal_error"),
        ("currency", "usd", "literal_error"),
        ("merchant_category", "541", "string_pattern_mismatch"),
        ("merchant_category", 5411, "string_type"),
        ("country", "de", "string_pattern_mismatch"),
        ("country", "DEU", "string_pattern_mismatch"),
        ("distance_from_home_km", -0.1, "greater_than_equal"),
        ("transactions_last_24h", 1001, "less_than_equal"),
        ("account_age_days", 36_501, "less_than_equal"),
        ("avg_amount_30d", -1, "greater_than_equal"),
        ("transaction_id", "", "string_pattern_mismatch"),
        ("transaction_id", "a" * 65, "string_pattern_mismatch"),
        ("transaction_id", "bad id!", "string_pattern_mismatch"),
    ],
)
def test_boundaries_rejected_naming_field_and_rule(field, value, rule):
    assert rejected_rule(with_(**{field: value})) == (field, rule)


def test_unknown_field_rejected():
    assert rejected_rule(with_(merchant_name="ACME")) == ("merchant_name", "extra_forbidden")


@pytest.mark.parametrize("field", FEATURES)
def test_every_feature_is_required(field):
    data = dict(VALID_TRANSACTION)
    del data[field]
    assert rejected_rule(data) == (field, "missing")


def test_list_bounds():
    from pydantic import TypeAdapter

    adapter = TypeAdapter(TransactionList)
    assert len(adapter.validate_python([VALID_TRANSACTION] * MAX_BATCH_ITEMS)) == MAX_BATCH_ITEMS
    for bad in ([], [VALID_TRANSACTION] * (MAX_BATCH_ITEMS + 1)):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


@pytest.mark.parametrize("probability", [-0.01, 1.01, math.nan, math.inf])
def test_score_rejects_impossible_probabilities(probability):
    with pytest.raises(ValidationError):
        Score(probability=probability, decision="fraud", threshold=0.5, model_version="m:1")


def test_score_decision_is_closed():
    with pytest.raises(ValidationError):
        Score(probability=0.5, decision="maybe", threshold=0.5, model_version="m:1")
