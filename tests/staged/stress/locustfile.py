"""Stress: steps the number of users past normal demand up to a peak, then drops back to the
starting load to measure recovery. Settings (SHIPYARD_SUITE_<NAME> environment variables, from
environment.yaml's suites.stress): start_users, step_users, peak_users, step_s, recovery_s.

    locust -f tests/staged/stress/locustfile.py --headless --host http://127.0.0.1:3001
"""

from __future__ import annotations

import os

import locust.stats
from locust import LoadTestShape

from tests.staged.load.locustfile import Scorer  # noqa: F401  (the same user as the load suite)


# Percentiles in the history over 2 s windows instead of 10 s, so recovery shows when it happens.
locust.stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = 2


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(f"SHIPYARD_SUITE_{name.upper()}", default))


class StepsThenRecovery(LoadTestShape):
    start = int(_setting("start_users", 8))
    step = int(_setting("step_users", 16))
    peak = int(_setting("peak_users", 128))
    step_s = _setting("step_s", 10)
    recovery_s = _setting("recovery_s", 20)

    def tick(self):
        t = self.get_run_time()
        steps = max(1, -(-(self.peak - self.start) // self.step) + 1)
        if t < steps * self.step_s:
            users = min(self.peak, self.start + int(t // self.step_s) * self.step)
            return users, 100  # users change within a second: steps, not ramps
        if t < steps * self.step_s + self.recovery_s:
            return self.start, 100
        return None
