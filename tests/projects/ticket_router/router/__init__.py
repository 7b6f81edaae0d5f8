"""ticket_router: a tiny BentoML 1.4 project that routes support tickets to a queue.

Stand-alone on purpose (only bentoml, scikit-learn, numpy, pydantic): train with
`python -m router.train`, then `bentoml build` and `bentoml serve`.
"""

MODEL_NAME = "ticket_router"
QUEUES = ("billing", "technical", "account", "sales")
