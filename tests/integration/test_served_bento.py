"""The built Bento served by a real `bentoml serve`: answers, rejections, health, metrics, OpenAPI."""

from __future__ import annotations

import json

import pytest

from service.schemas import MAX_BATCH_ITEMS, Score
from tests.conftest import VALID_TRANSACTION

pytestmark = pytest.mark.server
JSON = {"content-type": "application/json"}


def tx(**changes):
    return {**VALID_TRANSACTION, **changes}


def test_scores_a_valid_transaction(client, built_bento):
    resp = client.post("/score", json=VALID_TRANSACTION)
    assert resp.status_code == 200, resp.text
    score = Score.model_validate(resp.json())
    assert score.transaction_id == "tx-1"
    assert score.model_version.startswith("fraud_detector:")


def test_scores_a_client_sent_list_in_order(client):
    items = [tx(transaction_id=f"t{i}", amount=10.0 + i) for i in range(MAX_BATCH_ITEMS)]
    resp = client.post("/score_batch", json=items)
    assert resp.status_code == 200, resp.text
    scores = [Score.model_validate(s) for s in resp.json()]
    assert [s.transaction_id for s in scores] == [f"t{i}" for i in range(MAX_BATCH_ITEMS)]


def test_single_and_list_agree(client):
    one = client.post("/score", json=VALID_TRANSACTION).json()
    many = client.post("/score_batch", json=[VALID_TRANSACTION]).json()
    assert many == [one]


# (name, path, raw body or JSON value, headers, expected status, field the error must name)
INVALID = [
    ("amount zero", "/score", tx(amount=0), None, 400, "amount"),
    ("amount negative", "/score", tx(amount=-10.0), None, 400, "amount"),
    ("amount too large", "/score", tx(amount=2e6), None, 400, "amount"),
    ("amount as string", "/score", tx(amount="10"), None, 400, "amount"),
    ("amount NaN token", "/score", json.dumps(tx()).replace("42.5", "NaN"), None, 400, "amount"),
    ("amount Infinity token", "/score", json.dumps(tx()).replace("42.5", "Infinity"), None, 400, "amount"),
    ("amount overflows to inf", "/score", json.dumps(tx()).replace("42.5", "1e400"), None, 400, "amount"),
    ("amount null", "/score", tx(amount=None), None, 400, "amount"),
    ("currency unknown", "/score", tx(currency="XXX"), None, 400, "currency"),
    ("currency lowercase", "/score", tx(currency="eur"), None, 400, "currency"),
    ("mcc too short", "/score", tx(merchant_category="541"), None, 400, "merchant_category"),
    ("mcc as number", "/score", tx(merchant_category=5411), None, 400, "merchant_category"),
    ("country lowercase", "/score", tx(country="de"), None, 400, "country"),
    ("country three letters", "/score", tx(country="DEU"), None, 400, "country"),
    ("hour 24", "/score", tx(hour=24), None, 400, "hour"),
    ("hour fractional", "/score", tx(hour=3.5), None, 400, "hour"),
    ("hour boolean", "/score", tx(hour=True), None, 400, "hour"),
    ("card_present string", "/score", tx(card_present="yes"), None, 400, "card_present"),
    ("distance negative", "/score", tx(distance_from_home_km=-1.0), None, 400, "distance_from_home_km"),
    ("burst too large", "/score", tx(transactions_last_24h=5000), None, 400, "transactions_last_24h"),
    ("account age negative", "/score", tx(account_age_days=-1), None, 400, "account_age_days"),
    ("avg amount list", "/score", tx(avg_amount_30d=[1]), None, 400, "avg_amount_30d"),
    ("missing field", "/score", {k: v for k, v in tx().items() if k != "hour"}, None, 400, "hour"),
    ("unknown field", "/score", tx(cvv="123"), None, 400, "cvv"),
    ("transaction id too long", "/score", tx(transaction_id="x" * 65), None, 400, "transaction_id"),
    ("malformed JSON", "/score", '{"amount": 1,', None, 400, "body"),
    ("empty body", "/score", "", None, 400, "amount"),
    ("array instead of object", "/score", [tx()], None, 400, "body"),
    ("double-encoded JSON", "/score", json.dumps(json.dumps(tx())), None, 400, "body"),
    ("text/plain", "/score", json.dumps(tx()), {"content-type": "text/plain"}, 415, "Content-Type"),
    ("form encoded", "/score", "amount=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    ("no content type", "/score", json.dumps(tx()), {"content-type": ""}, 415, "Content-Type"),
    ("oversized body", "/score", json.dumps(tx(transaction_id="x")) + " " * (1 << 20), None, 413, "body"),
    ("empty list", "/score_batch", [], None, 400, "body"),
    ("oversized list", "/score_batch", [tx()] * (MAX_BATCH_ITEMS + 1), None, 400, "body"),
    ("invalid item in list", "/score_batch", [tx(), tx(hour=99)], None, 400, "[1].hour"),
    ("object instead of list", "/score_batch", tx(), None, 400, "body"),
]
# Malformed bodies, every class on every route: a 400 in the error contract, never BentoML's 500.
MALFORMED = {
    "truncated JSON": b'[{"amount": 1',
    "invalid UTF-8": b'[{"amount": 1, "currency": "\xff\xfe"}]',
    "deeply nested array": b"[" * 5000 + b"]" * 5000,
    "deeply nested object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "trailing garbage": json.dumps([VALID_TRANSACTION]).encode() + b" }",
    "lone surrogate escape": b'[{"transaction_id": "\\ud800"}]',
}
for _name, _raw in MALFORMED.items():
    for _path in ("/score", "/score_batch"):
        _body = _raw if _path == "/score_batch" else (_raw[1:-1] if _raw.startswith(b"[{") and _raw.endswith(b"}]") else _raw)
        INVALID.append((f"{_name} on {_path}", _path, _body, None, 400, "body"))


@pytest.mark.parametrize("name,path,body,headers,status,field", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_requests_get_a_4xx_naming_the_field(client, name, path, body, headers, status, field):
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    resp = client.post(path, content=raw, headers=headers if headers is not None else JSON)
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert payload["error"] and payload["message"]
    named = [f["field"] for f in payload["fields"]]
    assert field in named, payload
    assert all(f["rule"] for f in payload["fields"])


def test_invalid_kinds_are_many_and_distinct():
    assert len({c[0] for c in INVALID}) >= 25


def test_wrong_method_is_405(client):
    resp = client.get("/score")
    assert resp.status_code == 405 and resp.json()["error"] == "method_not_allowed"


def test_health_endpoints(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_metrics_count_decisions(client):
    client.post("/score", json=VALID_TRANSACTION)
    text = client.get("/metrics").text
    assert "shipyard_decisions_total" in text
    assert "bentoml_service_request_total" in text or "http_request" in text


def _resolve(node, schemas):
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(schemas[node["$ref"].rsplit("/", 1)[1]], schemas)
        return {k: _resolve(v, schemas) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, schemas) for v in node]
    return node


def test_the_document_is_valid_openapi_3_1(client):
    from openapi_spec_validator import validate

    spec = client.get("/docs.json").json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises, naming the invalid part


def test_every_api_documents_what_it_can_answer(client):
    spec = client.get("/docs.json").json()
    for path in ("/score", "/score_batch"):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        responses = operation["responses"]
        assert {"200", "400", "413", "415", "500", "503", "504"} <= set(responses)
        for status in ("400", "413", "415", "500", "503", "504"):
            assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert responses["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "InvalidArgument" not in spec["components"]["schemas"]


def test_the_typed_client_speaks_the_published_document(client):
    """service/client.py sends Transaction, reads Score and the error contract: the very schemas served."""
    from pydantic import TypeAdapter

    from shipyard_serving.errors import ErrorBody
    from service.schemas import Transaction, TransactionBatch

    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]

    def served(path: str, part: str) -> dict:
        operation = spec["paths"][path]["post"]
        node = operation["requestBody"] if part == "request" else operation["responses"]["200"]
        return _resolve(node["content"]["application/json"]["schema"], schemas)

    def local(typ, mode: str) -> dict:
        schema = TypeAdapter(typ).json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        return _resolve({k: v for k, v in schema.items() if k != "$defs"}, {**schemas, **schema.get("$defs", {})})

    assert served("/score", "request") == local(Transaction, "validation")
    assert served("/score", "response") == local(Score, "serialization")
    assert served("/score_batch", "request") == local(TransactionBatch, "validation")
    assert served("/score_batch", "response") == local(list[Score], "serialization")
    assert _resolve(schemas["Error"], schemas) == local(ErrorBody, "serialization")
    # null is what the service sends for a missing id: the document must allow it
    assert {"type": "null"} in served("/score", "response")["properties"]["transaction_id"]["anyOf"]


def test_openapi_carries_the_constraints(client):
    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    tx_schema = schemas["Transaction"]
    props = tx_schema["properties"]
    assert props["amount"]["exclusiveMinimum"] == 0 and props["amount"]["maximum"] == 1_000_000
    assert props["hour"]["minimum"] == 0 and props["hour"]["maximum"] == 23
    assert props["merchant_category"]["pattern"] == r"^\d{4}$"
    assert tx_schema.get("additionalProperties") is False
    assert {"/score", "/score_batch"} <= set(spec["paths"])
