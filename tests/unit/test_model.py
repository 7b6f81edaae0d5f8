"""The data generator and training are realistic and reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from service.model import (
    LABEL,
    build_pipeline,
    frame_hash,
    generate_transactions,
    representative_sample,
    train,
)
from service.schemas import FEATURES, Transaction


@pytest.fixture(scope="module")
def data():
    return generate_transactions(40_000, seed=11)


def test_generator_is_seeded(data):
    assert frame_hash(generate_transactions(40_000, seed=11)) == frame_hash(data)
    assert frame_hash(generate_transactions(40_000, seed=12)) != frame_hash(data)


def test_fraud_rate_is_realistic(data):
    assert 0.01 <= data[LABEL].mean() <= 0.025


def test_every_generated_row_is_valid_for_the_schema(data):
    rows = data.drop(columns=[LABEL]).sample(2000, random_state=0).to_dict("records")
    for row in rows:
        Transaction.model_validate({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})


def test_sample_has_the_full_sets_distributions(data):
    sample = representative_sample(data, rows=4000, seed=11)
    assert len(sample) == 4000
    assert sample[LABEL].mean() == pytest.approx(data[LABEL].mean(), abs=0.002)
    for col in ("amount", "distance_from_home_km", "account_age_days"):
        assert sample[col].median() == pytest.approx(data[col].median(), rel=0.1)
    assert set(sample["currency"]) == set(data["currency"])


def test_training_is_reproducible_and_learns(data):
    first, second = train(data, seed=3), train(data, seed=3)
    assert first.data_hash == second.data_hash
    x = data[list(FEATURES)].iloc[:500]
    np.testing.assert_array_equal(first.pipeline.predict_proba(x), second.pipeline.predict_proba(x))
    assert first.threshold == second.threshold
    assert first.metrics["roc_auc"] > 0.85
    assert 0 < first.threshold < 1


def test_pipeline_tolerates_unseen_categories(data):
    pipeline = build_pipeline(0).fit(data[list(FEATURES)], data[LABEL])
    row = data[list(FEATURES)].iloc[:1].copy()
    row["country"], row["merchant_category"] = "ZZ", "0000"
    proba = pipeline.predict_proba(row)
    assert proba.shape == (1, 2) and 0 <= proba[0, 1] <= 1
