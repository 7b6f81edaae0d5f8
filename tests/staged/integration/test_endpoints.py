"""Integration through the deployed service: both endpoints, the error contract, large lists,
headers."""

from __future__ import annotations

import os

import pytest

from tests.staged.conftest import VALID


def test_single_and_list_agree(client):
    one = client.post("/score", json=VALID).json()
    assert client.post("/score_batch", json=[VALID]).json() == [one]


def test_a_full_list_is_answered_in_order(client):
    items = [{**VALID, "transaction_id": f"i{i}", "amount": 1.0 + i} for i in range(1000)]
    resp = client.post("/score_batch", json=items)
    assert resp.status_code == 200
    assert [s["transaction_id"] for s in resp.json()] == [f"i{i}" for i in range(1000)]


@pytest.mark.parametrize("body,status,field", [
    ({**VALID, "hour": 24}, 400, "hour"),
    ({**VALID, "extra": 1}, 400, "extra"),
    ([], 400, "body"),
])
def test_error_contract(client, body, status, field):
    path = "/score_batch" if isinstance(body, list) else "/score"
    resp = client.post(path, json=body)
    assert resp.status_code == status
    payload = resp.json()
    assert payload["error"] == "validation_error" and field in [f["field"] for f in payload["fields"]]


def test_oversized_list_and_wrong_content_type(client):
    assert client.post("/score_batch", json=[VALID] * 1001).status_code == 400
    resp = client.post("/score", content=b"{}", headers={"content-type": "text/plain"})
    assert resp.status_code == 415 and resp.json()["fields"][0]["field"] == "Content-Type"


def test_response_headers(client):
    resp = client.post("/score", json=VALID)
    assert resp.headers["content-type"].startswith("application/json")


def test_an_invalid_request_is_rejected_naming_the_field(client):
    resp = client.post("/score", json={**VALID, "amount": -1})
    assert resp.status_code == 400 and resp.json()["fields"][0]["field"] == "amount"


def test_decisions_are_counted_in_the_metrics(client):
    client.post("/score", json=VALID)
    assert "shipyard_decisions_total" in client.get("/metrics").text


def test_model_version_is_the_expected_one(client):
    expected = os.environ.get("SHIPYARD_EXPECTED_MODEL")
    served = client.post("/score", json=VALID).json()["model_version"]
    assert served.startswith("fraud_detector:")
    if expected:
        assert served == expected, f"serving {served}, the environment should run {expected}"
