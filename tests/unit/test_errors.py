"""The error contract's shape at each detail level."""

from __future__ import annotations

import pytest

from shipyard_serving.errors import error_detail_level, field_path, validation_body

ERRORS = [{"loc": ("amount",), "type": "greater_than", "msg": "Input should be greater than 0"},
          {"loc": (3, "hour"), "type": "less_than_equal", "msg": "Input should be less than or equal to 23"}]


def test_paths_read_like_the_request():
    assert field_path(("amount",)) == "amount"
    assert field_path((3, "hour")) == "[3].hour"
    assert field_path(()) == "body"
    assert field_path(("root",)) == "body"
    assert field_path(("root", 1, "amount")) == "[1].amount"


def test_full_detail_names_field_rule_and_message():
    body = validation_body(ERRORS, "full")
    assert body["error"] == "validation_error"
    assert body["fields"][1] == {"field": "[3].hour", "rule": "less_than_equal",
                                 "message": "Input should be less than or equal to 23"}


def test_fields_level_hides_messages_and_none_hides_fields():
    assert validation_body(ERRORS, "fields")["fields"][0] == {"field": "amount", "rule": "greater_than"}
    assert "fields" not in validation_body(ERRORS, "none")


def test_unknown_detail_level_is_refused(monkeypatch):
    monkeypatch.setenv("SHIPYARD_ERROR_DETAIL", "verbose")
    with pytest.raises(ValueError, match="SHIPYARD_ERROR_DETAIL must be one of full, fields, none"):
        error_detail_level()
