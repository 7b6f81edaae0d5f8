from __future__ import annotations

from typing import Annotated

import bentoml
import numpy as np
import pandas as pd
from bentoml.validators import DataframeSchema
from pydantic import Field

FEATURES = ["area_m2", "rooms", "age_years"]


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 20})
class HousePrices:
    bento_model = bentoml.models.get("house_price_model:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.bento_model)

    @bentoml.api
    def predict(
        self, houses: Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=FEATURES)]
    ) -> np.ndarray:
        """Prices for a table of houses, one per row."""
        try:
            table = houses[FEATURES].astype(float)
        except (KeyError, ValueError, TypeError) as exc:
            raise bentoml.exceptions.InvalidArgument(f"every row needs numeric {', '.join(FEATURES)}: {exc}") from None
        if table.empty:
            return np.zeros(0)
        if table.isna().any().any():
            raise bentoml.exceptions.InvalidArgument(f"every row needs a value for each of {', '.join(FEATURES)}")
        return self.model.predict(table)

    @bentoml.api
    def price_one(
        self,
        area_m2: float = Field(gt=0, le=10_000),
        rooms: int = Field(3, ge=1, le=50),
        age_years: float = Field(10.0, ge=0, le=500),
    ) -> float:
        """The price of one house."""
        frame = pd.DataFrame([[area_m2, rooms, age_years]], columns=FEATURES)
        return float(self.model.predict(frame)[0])
