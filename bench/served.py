"""The fraud scorer with shipyard's serving layer, as `shipyard build` wraps it in the Bento's
entry module: for the benchmark, which serves the scorer from its source (`bentoml serve <this module>:FraudScorer`)."""

import shipyard_serving
from service.service import FraudScorer as _service

FraudScorer = shipyard_serving.install(_service)
