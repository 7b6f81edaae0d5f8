"""Fit a linear price model on synthetic sales and save it with BentoML's scikit-learn API."""

import bentoml
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

rng = np.random.default_rng(0)
sales = pd.DataFrame({"area_m2": rng.uniform(30, 200, 400), "rooms": rng.integers(1, 7, 400),
                      "age_years": rng.uniform(0, 80, 400)})
price = 2500 * sales.area_m2 + 8000 * sales.rooms - 600 * sales.age_years + rng.normal(0, 5000, 400)
model = LinearRegression().fit(sales, price)
saved = bentoml.sklearn.save_model("house_price_model", model, metadata={"r2": model.score(sales, price)})
print(f"saved {saved.tag}")
