"""A benchmark-only variant of the service: the same scoring behind an adaptive-batching API.

Both APIs take a list so the wire format is identical; only `batchable` differs. max_latency_ms
is generous (300): with 10 ms the dispatcher sheds most requests with 503 on this machine. Served by
bench/serving.py to decide whether adaptive batching helps single-row traffic under concurrency.
"""

from __future__ import annotations

import bentoml

from service.schemas import Score, Transaction
from service.service import MODEL_TAG, FraudScorer

_Inner = FraudScorer.inner


@bentoml.service(name="fraud_scorer_batching_bench", workers=1, traffic={"timeout": 30})
class BatchingBench:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)
    __init__ = _Inner.__init__
    _scores = _Inner._scores
    _answer = _Inner._answer

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=300)
    def batched(self, transactions: list[Transaction], /) -> list[Score]:
        return self._answer(transactions)

    @bentoml.api
    def unbatched(self, transactions: list[Transaction], /) -> list[Score]:
        return self._answer(transactions)
