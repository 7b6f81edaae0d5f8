from __future__ import annotations

import logging
import os
from typing import Literal, Optional

import bentoml
import joblib
import numpy as np
from pydantic import BaseModel, Field

logger = logging.getLogger("bentoml.service")

Plan = Literal["basic", "plus", "premium"]


class Customer(BaseModel):
    tenure_months: int = Field(ge=0, le=600, examples=[18])
    monthly_charge: float = Field(ge=0, le=10_000, examples=[49.9])
    plan: Plan = "basic"
    support_calls: int = Field(0, ge=0, le=1000)
    promo_code: Optional[str] = Field(None, max_length=32)


class Risk(BaseModel):
    churn_probability: float
    segment: Literal["low", "medium", "high"]
    reasons: list[str]


@bentoml.service(
    resources={"cpu": "2"},
    workers=2,
    traffic={"timeout": 15, "max_concurrency": 32},
    envs=[{"name": "CHURN_HIGH_RISK", "value": "0.6"}],
)
class ChurnPredictor:
    model_ref = bentoml.models.BentoModel("churn_model:latest")

    @bentoml.on_deployment
    def prepare() -> None:
        logger.info("churn predictor deploying")

    def __init__(self) -> None:
        self.model = joblib.load(self.model_ref.path_of("model.joblib"))
        self.high = float(os.environ.get("CHURN_HIGH_RISK", "0.6"))

    def __is_alive__(self) -> bool:
        return self.model is not None

    def _features(self, c: Customer) -> list[float]:
        plans = {"basic": 0.0, "plus": 1.0, "premium": 2.0}
        return [c.tenure_months, c.monthly_charge, plans[c.plan], c.support_calls]

    @bentoml.api
    def predict(self, customer: Customer) -> Risk:
        """The churn risk of one customer."""
        p = float(self.model.predict_proba(np.array([self._features(customer)]))[0, 1])
        reasons = [r for r, hit in (("short tenure", customer.tenure_months < 6),
                                    ("many support calls", customer.support_calls > 3)) if hit]
        segment = "high" if p >= self.high else "medium" if p >= self.high / 2 else "low"
        return Risk(churn_probability=round(p, 4), segment=segment, reasons=reasons)

    @bentoml.api
    def predict_many(self, customers: list[Customer] = Field(max_length=500)) -> list[float]:
        """Churn probabilities for many customers."""
        if not customers:
            return []
        rows = np.array([self._features(c) for c in customers])
        return [round(float(p), 4) for p in self.model.predict_proba(rows)[:, 1]]
