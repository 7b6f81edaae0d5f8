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


def test_bentomls_answers_are_rewritten_into_the_contract():
    """BentoML answers a BentoMLException's 4xx as a one-element list (`({"error": ...},)`), a
    pydantic failure with `detail`; an answer already in the contract's shape passes unchanged."""
    import asyncio
    import json

    from shipyard_serving.errors import _RewritingSend

    def rewritten(status: int, body: object) -> tuple[int, dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def answer() -> None:
            rewriting = _RewritingSend(send, "full")
            await rewriting({"type": "http.response.start", "status": status, "headers": []})
            await rewriting({"type": "http.response.body", "body": json.dumps(body).encode()})

        asyncio.run(answer())
        return sent[0]["status"], json.loads(sent[1]["body"])

    assert rewritten(400, [{"error": "cannot identify image file"}]) == (
        400, {"error": "bad_request", "message": "cannot identify image file"})
    status, body = rewritten(400, {"error": "1 validation error", "detail": [
        {"loc": ["image"], "type": "missing", "msg": "Field required"}]})
    assert body["fields"] == [{"field": "image", "rule": "missing", "message": "Field required"}]
    mine = {"error": "validation_error", "message": "1 invalid field", "fields": []}
    assert rewritten(400, mine) == (400, mine)
    assert rewritten(500, {"error": "An unexpected error has occurred"})[1]["error"] == "internal_error"
