"""User acceptance: the business's scenarios (scenarios.yaml) and the model's quality measured
through the live service on the environment's representative sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

SCENARIOS = yaml.safe_load((Path(__file__).parent / "scenarios.yaml").read_text())["scenarios"]
_FAILED: list[str] = []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(client, record, scenario):
    resp = client.post("/score", json=scenario["transaction"])
    record("scenarios", len(SCENARIOS))
    ok = resp.status_code == 200 and scenario["expect"] in ("any", resp.json()["decision"])
    if not ok:
        _FAILED.append(scenario["name"])
    record("scenario_failures", len(_FAILED))
    assert resp.status_code == 200, resp.text
    assert ok, f"{scenario['name']}: expected {scenario['expect']}, got {resp.json()['decision']} ({resp.json()['probability']:.3f})"


def test_model_quality_on_the_representative_sample(client, record):
    import numpy as np
    import pandas as pd
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    sample = os.environ.get("SHIPYARD_DATA_SAMPLE")
    if not sample or not Path(sample).exists():
        pytest.fail(f"no representative sample (SHIPYARD_DATA_SAMPLE={sample!r}): run `shipyard train`, "
                    "or set data_sample in the environment's environment.yaml")
    frame = pd.read_csv(sample, dtype={"merchant_category": str})
    labels = frame.pop("is_fraud").to_numpy()
    records = frame.to_dict("records")
    proba, decided = [], []
    for start in range(0, len(records), 500):
        chunk = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records[start:start + 500]]
        resp = client.post("/score_batch", json=chunk)
        assert resp.status_code == 200, resp.text[:300]
        for score in resp.json():
            proba.append(score["probability"])
            decided.append(score["decision"] == "fraud")
    record("rows", len(records))
    record("roc_auc", float(roc_auc_score(labels, np.array(proba))))
    record("precision", float(precision_score(labels, np.array(decided), zero_division=0)))
    record("recall", float(recall_score(labels, np.array(decided))))
