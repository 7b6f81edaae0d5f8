"""Train a churn classifier on synthetic customers and save it to the model store."""

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

import bentoml

rng = np.random.default_rng(7)
n = 600
tenure = rng.integers(0, 72, n)
charge = rng.uniform(10, 120, n)
plan = rng.integers(0, 3, n)
calls = rng.poisson(1.5, n)
churned = (0.8 * (tenure < 6) + 0.3 * (calls > 3) + 0.004 * charge - 0.1 * plan + rng.normal(0, 0.2, n)) > 0.5
model = GradientBoostingClassifier(n_estimators=50, max_depth=2).fit(np.c_[tenure, charge, plan, calls], churned)

with bentoml.models.create(name="churn_model", labels={"framework": "sklearn"},
                           metadata={"accuracy": float(model.score(np.c_[tenure, charge, plan, calls], churned))}) as m:
    joblib.dump(model, m.path_of("model.joblib"))
    print(f"saved {m.tag}")
