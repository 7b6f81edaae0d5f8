from __future__ import annotations

import typing as t

import bentoml
import joblib
import numpy as np
from pydantic import BaseModel, Field


class SimilarityRequest(bentoml.IODescriptor):
    query: str = Field(examples=["refund for a damaged parcel"])
    candidates: list[str] = Field(min_length=1, max_length=50,
                                  examples=[["parcel arrived broken", "change my delivery address"]])


class Match(BaseModel):
    text: str
    score: float


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 20}, workers=1)
class SentenceEmbeddings:
    vectorizer_ref = bentoml.models.BentoModel("tfidf_vectorizer:latest")

    def __init__(self) -> None:
        self.vectorizer = joblib.load(self.vectorizer_ref.path_of("vectorizer.joblib"))

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=500)
    def encode(self, sentences: list[str]) -> np.ndarray:
        """One unit-length vector per sentence."""
        if not sentences:
            return np.zeros((0, len(self.vectorizer.vocabulary_)), dtype=np.float32)
        return self.vectorizer.transform(sentences).toarray().astype(np.float32)

    @bentoml.api(input_spec=SimilarityRequest)
    def rank(self, **params: t.Any) -> list[Match]:
        """The candidates most similar to the query first."""
        vectors = self.vectorizer.transform([params["query"], *params["candidates"]]).toarray()
        scores = vectors[1:] @ vectors[0]
        order = np.argsort(-scores)
        return [Match(text=params["candidates"][i], score=round(float(scores[i]), 4)) for i in order]

    @bentoml.api
    def tokens(self, text: str = Field(examples=["where is my parcel"])) -> t.Generator[str, None, None]:
        """The known words of the text, streamed one per line."""
        analyzer = self.vectorizer.build_analyzer()
        for token in analyzer(text):
            if token in self.vectorizer.vocabulary_:
                yield token + "\n"
