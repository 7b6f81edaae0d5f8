"""The four serving modes can never disagree: the same transactions through real-time (the served
Bento), batch (`shipyard batch`), stream (the worker on the real Redis) and edge (the exported
ONNX file under onnxruntime) give the same scores and reject the same records for the same reason."""

from __future__ import annotations

import csv
import json
import uuid

import httpx
import pytest

from service.model import generate_transactions
from tests.conftest import VALID_TRANSACTION, run_cli

pytestmark = pytest.mark.server
TOLERANCE = 1e-9

INVALID = [
    {**VALID_TRANSACTION, "transaction_id": "bad-hour", "hour": 24},
    {**VALID_TRANSACTION, "transaction_id": "bad-currency", "currency": "XXX"},
    {**VALID_TRANSACTION, "transaction_id": "bad-type", "amount": "12.5"},
    {**VALID_TRANSACTION, "transaction_id": "extra", "colour": "red"},
    {k: v for k, v in VALID_TRANSACTION.items() if k != "country"} | {"transaction_id": "missing"},
]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    valid = generate_transactions(300, seed=77).drop(columns=["is_fraud"]).to_dict("records")
    rows = valid[:150] + INVALID + valid[150:]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]


def real_time(url: str, rows: list[dict]) -> list:
    out = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for row in rows:
            response = client.post("/score", json=row)
            if response.status_code == 200:
                out.append(response.json()["probability"])
            else:
                assert response.status_code == 400, response.text
                first = response.json()["fields"][0]
                out.append((first["field"], first["rule"]))
    return out


def batch(rows: list[dict], tmp_path, model: str, cli_env) -> list:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.csv"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("batch", str(source), str(output), "--model", model, env=cli_env)
    assert result.returncode == 0, result.stderr
    out: dict[int, object] = {}
    with output.open() as f:
        for r in csv.DictReader(f):
            out[int(r["row"])] = float(r["probability"])
    with (tmp_path / "out.rejects.csv").open() as f:
        for r in csv.DictReader(f):
            out[int(r["row"])] = (r["field"], r["rule"])
    return [out[i + 1] for i in range(len(rows))]


def stream(rows: list[dict], model_tag: str) -> list:
    import redis

    from service.model import load_from_store
    from service.stream import StreamSettings, Worker

    prefix = f"parity-{uuid.uuid4().hex[:8]}"
    settings = StreamSettings(input_stream=f"{prefix}:in", output_stream=f"{prefix}:out",
                              dead_letter_stream=f"{prefix}:dead", consumer="parity", block_ms=100)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        ids = [client.xadd(settings.input_stream, {"data": json.dumps(r)}) for r in rows]
        model = load_from_store(model_tag)
        Worker(settings, model.pipeline, model.threshold, model.tag).run(max_idle_s=0.5)
        found = {f["input_id"]: json.loads(f["score"])["probability"] for _, f in client.xrange(settings.output_stream)}
        for _, f in client.xrange(settings.dead_letter_stream):
            reason = json.loads(f["reason"])
            found[f["input_id"]] = (reason["field"], reason["rule"])
        return [found[i] for i in ids]
    finally:
        client.delete(settings.input_stream, settings.output_stream, settings.dead_letter_stream, settings.seen_key)


def edge(rows: list[dict], model_tag: str, tmp_path) -> list:
    from service.edge import EdgeModel, export
    from service.frames import Rejection
    from service.model import load_from_store

    model = load_from_store(model_tag)
    exported = export(model.pipeline, model.tag, model.threshold, model.holdout(), tmp_path / "edge.onnx")
    return [(v.field, v.rule) if isinstance(v, Rejection) else v
            for v in EdgeModel(exported.path).score_records(rows)]


def test_every_mode_gives_the_same_scores_and_rejects(records, served, tmp_path, cli_env, redis_up):
    model = httpx.post(f"{served.url}/score", json=VALID_TRANSACTION, timeout=30).json()["model_version"]
    modes = {
        "real-time": real_time(served.url, records),
        "batch": batch(records, tmp_path, model, cli_env),
        "stream": stream(records, model),
        "edge": edge(records, model, tmp_path),
    }
    reference = modes["real-time"]
    rejected = [i for i, v in enumerate(reference) if isinstance(v, tuple)]
    assert rejected == list(range(150, 155)), reference[148:157]
    for name, answers in modes.items():
        assert len(answers) == len(records), name
        for i, (a, b) in enumerate(zip(reference, answers)):
            if isinstance(a, tuple):
                assert a == b, f"{name} row {i}: {b} vs real-time {a}"
            else:
                assert isinstance(b, float) and abs(a - b) <= TOLERANCE, f"{name} row {i}: {b} vs real-time {a}"
