"""Smoke: the service started and answers - health, one valid and one invalid request, metrics,
OpenAPI, and the model version the environment is supposed to run."""

from __future__ import annotations

import os

from tests.staged.conftest import VALID


def test_ready_and_live(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_a_valid_request_is_scored(client):
    resp = client.post("/score", json=VALID)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert 0 <= body["probability"] <= 1 and body["decision"] in ("fraud", "legitimate")


def test_an_invalid_request_is_rejected_naming_the_field(client):
    resp = client.post("/score", json={**VALID, "amount": -1})
    assert resp.status_code == 400 and resp.json()["fields"][0]["field"] == "amount"


def test_metrics_and_openapi_are_reachable(client):
    assert "shipyard_decisions_total" in client.get("/metrics").text
    assert "/score" in client.get("/docs.json").json()["paths"]


def test_model_version_is_the_expected_one(client):
    expected = os.environ.get("SHIPYARD_EXPECTED_MODEL")
    served = client.post("/score", json=VALID).json()["model_version"]
    assert served.startswith("fraud_detector:")
    if expected:
        assert served == expected, f"serving {served}, the environment should run {expected}"
