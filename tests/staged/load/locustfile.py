"""Load: the expected demand, for a fixed time. Users, spawn rate and duration come from the
command line (`shipyard verify` passes environment.yaml's suites.load); each user sends
SHIPYARD_SUITE_RPS_PER_USER requests per second (suites.load.rps_per_user), so the offered load
is users x that rate, as real clients offer it, rather than as fast as the server answers.

    SHIPYARD_SUITE_RPS_PER_USER=10 locust -f tests/staged/load/locustfile.py --headless -u 32 -r 32 -t 60s \
        --host http://127.0.0.1:3001
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, constant_throughput, task

from service.model import generate_transactions
from service.schemas import FEATURES

POOL = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in generate_transactions(500, seed=2024)[list(FEATURES)].to_dict("records")]


RPS_PER_USER = float(os.environ.get("SHIPYARD_SUITE_RPS_PER_USER", "0"))


class Scorer(FastHttpUser):
    wait_time = constant_throughput(RPS_PER_USER) if RPS_PER_USER > 0 else constant(0)

    @task
    def score(self) -> None:
        self.client.post("/score", json=random.choice(POOL), name="/score")
