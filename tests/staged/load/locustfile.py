"""Load: the expected concurrent demand, for a fixed time (users, spawn rate and duration come
from the command line; `shipyard verify` passes environment.yaml's suites.load).

    locust -f tests/staged/load/locustfile.py --headless -u 32 -r 32 -t 60s --host http://127.0.0.1:3001
"""

from __future__ import annotations

import random

from locust import FastHttpUser, constant, task

from service.model import generate_transactions
from service.schemas import FEATURES

POOL = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in generate_transactions(500, seed=2024)[list(FEATURES)].to_dict("records")]


class Scorer(FastHttpUser):
    wait_time = constant(0)

    @task
    def score(self) -> None:
        self.client.post("/score", json=random.choice(POOL), name="/score")
