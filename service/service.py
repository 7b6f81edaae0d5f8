"""The real-time fraud-scoring service (BentoML 1.4).

Kept short on purpose: schemas live in service.schemas, the model in service.model. The error
contract, the OpenAPI document, admission control and the worker's runtime are shipyard's serving
layer, which `shipyard build` wraps around this service: nothing here imports it. The model is
loaded once per worker; the APIs are thin. Every answer
is validated against the output schema before it leaves: a model that produces NaN, an out-of-range
probability or the wrong number of rows gets a 500 with a stable body and a metric, never a
silently wrong score.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml
import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from service.edge import ONNX_FILE, EdgeModel
from service.schemas import MODEL_NAME, Score, Transaction, TransactionBatch

logger = logging.getLogger("shipyard.service")


class ServiceArguments(BaseModel):
    """Bento arguments: `shipyard build` pins the exact model version here, and BentoML stores
    the arguments in the Bento, so a Bento serves the model it packs, never the store's latest."""

    model: str = os.environ.get("SHIPYARD_MODEL", f"{MODEL_NAME}:latest")


MODEL_TAG = bentoml.use_arguments(ServiceArguments).model

output_failures = bentoml.metrics.Counter(
    name="shipyard_output_validation_failures_total",
    documentation="Predictions withheld because they broke the output contract.",
    labelnames=["reason"],
)
decisions = bentoml.metrics.Counter(
    name="shipyard_decisions_total",
    documentation="Scores returned, by decision.",
    labelnames=["decision"],
)


class OutputContractError(Exception):
    """The model produced something the Score contract forbids."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@bentoml.service(
    name="fraud_scorer",
    workers=int(os.environ.get("SHIPYARD_WORKERS", "1")),
    traffic={"timeout": 10},
    resources={"cpu": "1"},
    # Latency buckets fine enough for answers of a millisecond or two: BentoML's default starts at
    # 5 ms, so a p99 (a canary's, against stable's) could not tell 1.5 ms from 4.5 ms.
    metrics={"duration": {"buckets": [0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05,
                                      0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]}},
)
class FraudScorer:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        # The model's exact ONNX form, written and parity-checked against scikit-learn at training
        # (service/edge.py): the same numbers at a twentieth of the per-call cost, no sklearn import.
        self.model = EdgeModel(Path(self.model_ref.path) / ONNX_FILE)
        info = self.model_ref.info
        self.threshold = float(info.metadata["threshold"])
        self.model_version = str(info.tag)
        if self.model.model_version != self.model_version:
            raise RuntimeError(f"{ONNX_FILE} belongs to {self.model.model_version}, not {self.model_version}")

    def __is_ready__(self) -> bool:
        return self.model is not None

    def _scores(self, transactions: list[Transaction]) -> list[Score]:
        proba = np.asarray(self.model.score(transactions))
        if proba.shape != (len(transactions),):
            raise OutputContractError("shape", f"model returned shape {proba.shape}, expected ({len(transactions)},)")
        try:
            return [
                Score(
                    transaction_id=t.transaction_id,
                    probability=float(p),
                    decision="fraud" if p >= self.threshold else "legitimate",
                    threshold=self.threshold,
                    model_version=self.model_version,
                )
                for t, p in zip(transactions, proba)
            ]
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = "not_finite" if first["type"] == "finite_number" else "out_of_range"
            raise OutputContractError(reason, f"{first['loc'][0]}: {first['msg']}") from exc

    def _answer(self, transactions: list[Transaction]) -> list[Score] | JSONResponse:
        try:
            scores = self._scores(transactions)
        except OutputContractError as exc:
            output_failures.labels(reason=exc.reason).inc()
            logger.error("output contract violated (%s): %s", exc.reason, exc)
            return JSONResponse(
                {"error": "output_validation_failed",  # the error contract's body (shipyard's serving layer)
                 "message": f"the model's answer broke the output contract ({exc.reason})"},
                status_code=500,
            )
        fraud = sum(score.decision == "fraud" for score in scores)
        # One increment per decision, not per score: a counter's label lookup costs a microsecond.
        if fraud:
            decisions.labels(decision="fraud").inc(fraud)
        if fraud < len(scores):
            decisions.labels(decision="legitimate").inc(len(scores) - fraud)
        return scores

    @bentoml.api(route="/score")
    async def score(self, transaction: Transaction, /) -> Score:
        """Score one transaction; the request body is the transaction itself."""
        answer = self._answer([transaction])
        return answer if isinstance(answer, JSONResponse) else answer[0]

    @bentoml.api(route="/score_batch")
    async def score_batch(self, transactions: TransactionBatch, /) -> list[Score]:
        """Score a client-sent list of 1..1000 transactions, answered in the same order."""
        return self._answer(transactions.root)
