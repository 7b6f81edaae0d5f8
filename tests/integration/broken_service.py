"""A deliberately broken scorer for the harness's own tests: the real service's code and model,
with faults switched on by environment variables.

- BROKEN_SLOW_MS: every /score sleeps this long (a latency gate must fail);
- BROKEN_5XX_HOUR: transactions at or after this hour answer 500 (contract: server errors);
- BROKEN_ACCEPT_HOUR: hour is not validated (contract: invalid input accepted);
- BROKEN_MODEL_VERSION: reports another model version (smoke must fail);
- BROKEN_418_HOUR: transactions at or after this hour answer 418, a status the document does not list;
- BROKEN_OFFSCHEMA: answers leave out `threshold`, which the document's Score requires.

It publishes the genuine service's document: the contract stays, the implementation regressed.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import bentoml
from pydantic import Field
from starlette.responses import JSONResponse

from service.schemas import Score, Transaction
from service.service import MODEL_TAG, FraudScorer
from shipyard_serving.errors import ErrorContractMiddleware
from shipyard_serving.openapi import OpenAPIMiddleware

_Inner = FraudScorer.inner
SLOW_S = float(os.environ.get("BROKEN_SLOW_MS", "0")) / 1000
FAIL_HOUR = int(os.environ.get("BROKEN_5XX_HOUR", "-1"))
ACCEPT_HOUR = os.environ.get("BROKEN_ACCEPT_HOUR") == "1"
MODEL_VERSION = os.environ.get("BROKEN_MODEL_VERSION")
TEAPOT_HOUR = int(os.environ.get("BROKEN_418_HOUR", "-1"))
OFFSCHEMA = os.environ.get("BROKEN_OFFSCHEMA") == "1"


class LaxTransaction(Transaction):
    """Transaction with `hour` unchecked: the bug a careless refactor would introduce."""

    hour: Annotated[int, Field()]


Body = LaxTransaction if ACCEPT_HOUR else Transaction


@bentoml.service(name="broken_scorer", workers=1, traffic={"timeout": 30})
class Broken:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)
    __init__ = _Inner.__init__
    _scores = _Inner._scores
    _answer = _Inner._answer

    @bentoml.api(route="/score")
    def score(self, transaction: Body, /) -> Score:
        if SLOW_S:
            time.sleep(SLOW_S)
        if 0 <= FAIL_HOUR <= transaction.hour:
            return JSONResponse({"error": "boom"}, status_code=500)
        if 0 <= TEAPOT_HOUR <= transaction.hour:
            return JSONResponse({"error": "teapot", "message": "not documented"}, status_code=418)
        answer = self._answer([Transaction.model_construct(**transaction.model_dump())])
        if isinstance(answer, JSONResponse):
            return answer
        score = answer[0]
        if OFFSCHEMA:
            return JSONResponse({k: v for k, v in score.model_dump().items() if k != "threshold"})
        return score.model_copy(update={"model_version": MODEL_VERSION}) if MODEL_VERSION else score

    @bentoml.api(route="/score_batch")
    def score_batch(self, transactions: list[Transaction], /) -> list[Score]:
        return self._answer(transactions)


Broken.add_asgi_middleware(ErrorContractMiddleware, api_paths=("/score", "/score_batch"))
Broken.add_asgi_middleware(OpenAPIMiddleware, service=FraudScorer)
