"""The baseline the serving path is judged against: what a competent engineer writes by hand with
the *same* model runtime and the *same* validation as the Bento. FastAPI on uvicorn (httptools,
uvloop), async handlers, the model's exact ONNX graph (service/edge.py) and the pydantic schemas
of service/schemas.py, answers validated against Score like the service's. No metrics, error
contract or admission control: the ratio says what those, and BentoML, cost.

    SHIPYARD_MODEL_DIR=<model folder> SHIPYARD_THRESHOLD=0.42 uvicorn bench.baseline_onnx_app:app --port 8000
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from service.edge import ONNX_FILE, EdgeModel
from service.schemas import Score, Transaction, TransactionList

MODEL = EdgeModel(Path(os.environ["SHIPYARD_MODEL_DIR"]) / ONNX_FILE)
THRESHOLD = float(os.environ["SHIPYARD_THRESHOLD"])
VERSION = os.environ.get("SHIPYARD_MODEL_VERSION", "baseline")
app = FastAPI()


def _scores(transactions: list[Transaction]) -> list[Score]:
    return [Score(transaction_id=t.transaction_id, probability=float(p), threshold=THRESHOLD, model_version=VERSION,
                  decision="fraud" if p >= THRESHOLD else "legitimate")
            for t, p in zip(transactions, MODEL.score(transactions))]


@app.post("/score")
async def score(transaction: Transaction) -> Score:
    return _scores([transaction])[0]


@app.post("/score_batch")
async def score_batch(transactions: TransactionList) -> list[Score]:
    return _scores(transactions)


@app.get("/readyz")
async def ready() -> dict:
    return {"ready": True}
