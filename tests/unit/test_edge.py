"""The ONNX export against scikit-learn: exact on real rows, including categories never seen in
training, and it refuses to write a model that disagrees."""

from __future__ import annotations

import numpy as np
import pytest

from service import edge
from service.model import generate_transactions, train


@pytest.fixture(scope="module")
def trained():
    return train(generate_transactions(20_000, seed=11), seed=11)


def test_export_matches_sklearn_on_every_row_and_unseen_categories(trained, tmp_path):
    rows = generate_transactions(5_000, seed=12)
    rows.loc[:9, "country"] = "ZZ"  # never seen: the encoder's unknown code, routed like a missing value
    rows.loc[10:19, "merchant_category"] = "0000"
    rows.loc[20:29, "currency"] = "INR"
    result = edge.export(trained.pipeline, "fraud_detector:test", trained.threshold, rows, tmp_path / "m.onnx")
    assert result.parity.ok, result.parity
    assert result.parity.max_abs_diff <= edge.PARITY_TOLERANCE and result.parity.decision_agreement == 1.0
    model = edge.EdgeModel(result.path)
    assert model.model_version == "fraud_detector:test" and model.threshold == trained.threshold
    p = model.probabilities(rows)
    assert p.shape == (len(rows),) and np.all((p >= 0) & (p <= 1))
    assert model.session.get_modelmeta().custom_metadata_map["input_schema"].startswith("{")


def test_a_disagreeing_export_is_refused_and_nothing_written(trained, tmp_path, monkeypatch):
    real = edge.EdgeModel.probabilities
    monkeypatch.setattr(edge.EdgeModel, "probabilities", lambda self, frame: real(self, frame) + 1e-3)
    with pytest.raises(edge.EdgeError, match="disagrees with scikit-learn"):
        edge.export(trained.pipeline, "v", trained.threshold, generate_transactions(500, seed=3), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
