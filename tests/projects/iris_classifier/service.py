from __future__ import annotations

from typing import Annotated

import bentoml
import joblib
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import Field


@bentoml.service(
    resources={"cpu": "1"},
    traffic={"timeout": 10},
)
class IrisClassifier:
    bento_model = bentoml.models.BentoModel("iris_clf:latest")

    def __init__(self) -> None:
        self.model = joblib.load(self.bento_model.path_of("model.pkl"))

    @bentoml.api(batchable=True)
    def classify(
        self,
        input_series: Annotated[np.ndarray, Shape((-1, 4)), DType("float64")] = Field(
            examples=[[[5.9, 3.0, 5.1, 1.8]]]
        ),
    ) -> np.ndarray:
        if len(input_series) == 0:
            return np.empty((0,), dtype=np.int64)
        return self.model.predict(input_series)
