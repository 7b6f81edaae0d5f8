"""The baseline: what a user would write instead of shipyard. A minimal FastAPI app that loads
the same model (the store's pipeline.joblib, scikit-learn) and scores one transaction per request
with the same pydantic schema. Served by uvicorn with one worker, like the Bento.

    SHIPYARD_MODEL_DIR=<model folder> uvicorn bench.baseline_app:app --port 8000
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from service.model import features_frame, load_pipeline
from service.schemas import Score, Transaction, TransactionList

MODEL_DIR = Path(os.environ["SHIPYARD_MODEL_DIR"])
pipeline = load_pipeline(MODEL_DIR)
THRESHOLD = float(os.environ["SHIPYARD_THRESHOLD"])
VERSION = os.environ.get("SHIPYARD_MODEL_VERSION", "baseline")
app = FastAPI()


def _scores(transactions: list[Transaction]) -> list[Score]:
    proba = pipeline.predict_proba(features_frame(t.model_dump() for t in transactions))[:, 1]
    return [Score(transaction_id=t.transaction_id, probability=float(p), threshold=THRESHOLD, model_version=VERSION,
                  decision="fraud" if p >= THRESHOLD else "legitimate") for t, p in zip(transactions, proba)]


@app.post("/score")
def score(transaction: Transaction) -> Score:
    return _scores([transaction])[0]


@app.post("/score_batch")
def score_batch(transactions: TransactionList) -> list[Score]:
    return _scores(transactions)


@app.get("/readyz")
def ready() -> dict:
    return {"ready": True}
