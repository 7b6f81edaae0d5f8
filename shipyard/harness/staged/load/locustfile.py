"""Load: the expected demand, for a fixed time. Users, spawn rate and duration come from the
command line (`shipyard verify` passes environment.yaml's suites.load); each user sends
SHIPYARD_SUITE_RPS_PER_USER requests per second (suites.load.rps_per_user), so the offered load
is users x that rate, as real clients offer it, rather than as fast as the server answers.

Bodies are the project's samples (shipyard.yaml traffic.samples, else the OpenAPI document's
examples), routes chosen by traffic.weights:

    SHIPYARD_SAMPLES=tests/staged/samples.json SHIPYARD_SUITE_RPS_PER_USER=10 \\
        locust -f <shipyard>/harness/staged/load/locustfile.py --headless -u 32 -r 32 -t 60s --host http://127.0.0.1:3001
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import MasterRunner

from shipyard.harness.staged.traffic import Encoded, plan

RPS_PER_USER = float(os.environ.get("SHIPYARD_SUITE_RPS_PER_USER", "0"))
PLAN: dict[str, Any] = {}  # route -> bodies, and the weighted route list: filled once the host is known


def _plan(host: str) -> None:
    bodies, shares = plan(host)
    PLAN["bodies"] = bodies
    PLAN["routes"], PLAN["weights"] = list(shares), list(shares.values())


@events.init.add_listener
def _plan_before_the_clock(environment, runner, **_: object) -> None:
    """Reads the served document and makes the bodies before the run starts: locust starts its
    run-time clock beside test_start, so planning there (a document fetch, schemathesis generating
    bodies for a route without examples: seconds on a busy machine) ate the run, and a 10 s load
    suite once sent nothing. A master sends nothing and plans nothing; a worker learns the URL
    from SHIPYARD_TARGET_URL (its host comes with the master's first spawn message)."""
    host = environment.host or os.environ.get("SHIPYARD_TARGET_URL")
    if host and not isinstance(runner, MasterRunner):
        _plan(host)


@events.test_start.add_listener
def _plan_when_the_host_is_known(environment, **_: object) -> None:
    """The fallback for a locust run told its host only by its master."""
    if not PLAN and not isinstance(environment.runner, MasterRunner):
        _plan(environment.host)


def next_request() -> tuple[str, Encoded]:
    """A route by its weight and one of its bodies, as bytes with their Content-Type."""
    route = random.choices(PLAN["routes"], PLAN["weights"])[0]
    return route, random.choice(PLAN["bodies"][route])


class ApiUser(FastHttpUser):
    wait_time = constant_throughput(RPS_PER_USER) if RPS_PER_USER > 0 else constant(0)

    @task
    def call(self) -> None:
        route, body = next_request()
        self.client.post(route, data=body.content, headers={"content-type": body.content_type}, name=route)
