from __future__ import annotations

import json
import os
from typing import Annotated, AsyncGenerator

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import BaseModel, Field


class Verdict(BaseModel):
    label: str
    score: float


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 10})
class WordScorer:
    """Scores bag-of-words vectors: adaptive batching groups concurrent calls."""

    model_ref = bentoml.models.BentoModel("spam_weights:latest")

    def __init__(self) -> None:
        with open(self.model_ref.path_of("weights.json")) as f:
            data = json.load(f)
        self.vocabulary = data["vocabulary"]
        self.weights = np.asarray(data["weights"], dtype="float32")

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)
    def score(self, vectors: Annotated[np.ndarray, Shape((-1, -1)), DType("float32")]) -> np.ndarray:
        counts = vectors.sum(axis=1)
        return np.where(counts > 0, vectors @ self.weights / np.maximum(counts, 1), 0.5).astype("float32")


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 10})
class SpamGateway:
    scorer = bentoml.depends(WordScorer)
    model_ref = bentoml.models.BentoModel("spam_weights:latest")

    def __init__(self) -> None:
        self.threshold = float(os.environ.get("SPAM_THRESHOLD", "0.5"))
        with open(self.model_ref.path_of("weights.json")) as f:
            data = json.load(f)
        self.vocabulary = {w: i for i, w in enumerate(data["vocabulary"])}
        self.weights = data["weights"]

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros((1, len(self.vocabulary)), dtype="float32")
        for word in text.lower().split():
            if word in self.vocabulary:
                vector[0, self.vocabulary[word]] += 1
        return vector

    @bentoml.api
    async def classify(
        self,
        text: Annotated[str, Field(min_length=1, max_length=2000, examples=["win a free prize now"])],
        ctx: bentoml.Context,
    ) -> Verdict:
        """Classify one message; a header says which model version decided. Answered 202 Accepted:
        the verdict is final, and the message is kept for review."""
        score = float((await self.scorer.to_async.score(self._vector(text)))[0])
        ctx.response.headers["X-Model-Version"] = str(self.model_ref.tag)
        ctx.response.status_code = 202
        return Verdict(label="spam" if score >= self.threshold else "ham", score=round(score, 4))

    @bentoml.api
    async def explain(
        self, text: Annotated[str, Field(min_length=1, max_length=2000, examples=["free money click now"])]
    ) -> AsyncGenerator[str, None]:
        """Stream each known word's spam weight, one line per word."""
        for word in text.lower().split():
            if word in self.vocabulary:
                yield f"{word}: {self.weights[self.vocabulary[word]]:.3f}\n"
            else:
                yield f"{word}: unknown\n"
