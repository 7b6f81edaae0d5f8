"""The service class called in-process, with a real model from the store."""

from __future__ import annotations

import asyncio

import pytest

from service.schemas import Score, Transaction, TransactionBatch
from tests.conftest import VALID_TRANSACTION


@pytest.fixture(scope="module")
def scorer(trained_model):
    from service.service import FraudScorer

    return FraudScorer()


def test_scores_one_transaction(scorer, trained_model):
    score = asyncio.run(scorer.score(Transaction.model_validate(VALID_TRANSACTION)))
    assert isinstance(score, Score)
    assert score.transaction_id == "tx-1"
    assert score.model_version == trained_model
    assert score.decision == ("fraud" if score.probability >= score.threshold else "legitimate")


def test_batch_keeps_order_and_matches_single(scorer):
    risky = {**VALID_TRANSACTION, "transaction_id": "tx-2", "amount": 4000.0, "hour": 3, "card_present": False,
             "merchant_category": "5944", "distance_from_home_km": 4000.0, "account_age_days": 5,
             "transactions_last_24h": 15}
    txs = [Transaction.model_validate(VALID_TRANSACTION), Transaction.model_validate(risky)]
    scores = asyncio.run(scorer.score_batch(TransactionBatch(txs)))
    assert [s.transaction_id for s in scores] == ["tx-1", "tx-2"]
    assert scores[0].probability == pytest.approx(asyncio.run(scorer.score(txs[0])).probability)
    assert scores[1].probability > scores[0].probability
    assert scores[1].decision == "fraud"


def test_broken_output_becomes_a_500_not_a_score(scorer, monkeypatch):
    import numpy as np

    monkeypatch.setattr(scorer.model, "score", lambda transactions: np.full(len(transactions), np.nan))
    answer = asyncio.run(scorer.score(Transaction.model_validate(VALID_TRANSACTION)))
    assert answer.status_code == 500
    assert b"output_validation_failed" in answer.body


def test_the_onnx_scores_equal_scikit_learns(scorer, trained_model):
    """The service runs the ONNX graph; the model store's pipeline is the reference."""
    from service.model import features_frame, load_from_store

    txs = [Transaction.model_validate({**VALID_TRANSACTION, "amount": a, "hour": h})
           for a, h in ((5.0, 3), (42.5, 14), (9000.0, 2), (300.0, 23))]
    expected = load_from_store(trained_model).pipeline.predict_proba(features_frame(t.model_dump() for t in txs))[:, 1]
    assert [s.probability for s in asyncio.run(scorer.score_batch(TransactionBatch(txs)))] == pytest.approx(list(expected), abs=1e-12)
