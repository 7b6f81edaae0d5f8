"""Stress: find the saturation point, hold 3 x that load, then check the service recovers.

Phases (settings are SHIPYARD_SUITE_<NAME> environment variables, from environment.yaml's
suites.stress): steps of `step_users` every `step_s` from `start_users` until adding users stops
adding throughput (under 10 % more answers per second) or `peak_users` is reached: the users of
the best step are the saturation load. Then `overload_factor` (3) x those users for `overload_s`
(30 s), then `start_users` again for `recovery_s`.

A real-time service rejects what it cannot answer in time, so a 503 with Retry-After is the
designed answer under overload, counted apart ("<route> [rejected]"), not an error. Each user is a
well-behaved client: after a 503 it waits what Retry-After says before its next request (a client
that ignores it is an open-loop storm). Bodies and routes as in the load suite.
Measured, and
written as JSON to SHIPYARD_STRESS_REPORT (printed when run by hand):
- answered_p99_ms: p99 of 200 answers during the overload phase (must stay under the deadline);
- rejection_p99_ms: p99 of the 503s during the overload phase (must be fast);
- server_errors: answers other than 200 and refusals (503, 429) and connection failures, all phases (a dying worker
  shows here);
- recovery_s: seconds from the end of the overload until the first 2-second window at normal load
  with p95 <= p95_ms_limit and no rejection or error;
- generator_cpu_at_saturation / generator_bound: locust's own CPU in the saturation step (in
  distributed mode, the busiest worker's); at 0.9 of a core or more the saturation found is the
  generator's, and "3 x saturation" did not overload the service (the report says so rather than
  passing it off as an overload).

Distributed (`locust --master` with `--worker`s, as `shipyard verify --target kubernetes` runs it):
the shape runs on the master, the users on the workers, so each worker sends the master its
requests' samples twice a second (a locust custom message) and once more when the test stops.
Times are wall-clock seconds, which every pod of a cluster shares (NTP), unlike monotonic clocks.

    SHIPYARD_SAMPLES=tests/staged/samples.json \
        locust -f <shipyard>/harness/staged/stress/locustfile.py --headless --host http://127.0.0.1:3001
"""

from __future__ import annotations

import json
import os
import time

import gevent
from locust import FastHttpUser, LoadTestShape, events, task
from locust.runners import MasterRunner, WorkerRunner

from shipyard.harness.stress import REFUSALS, Phases, Sample, answered_rps, summarize
from shipyard.harness.staged.load.locustfile import next_request  # also plans the routes at test start


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(f"SHIPYARD_SUITE_{name.upper()}", default))


START = int(_setting("start_users", 8))
STEP = int(_setting("step_users", 16))
PEAK = int(_setting("peak_users", 128))
STEP_S = _setting("step_s", 10)
OVERLOAD_FACTOR = _setting("overload_factor", 3)
OVERLOAD_S = _setting("overload_s", 30)
RECOVERY_S = _setting("recovery_s", 20)
P95_LIMIT = _setting("p95_ms_limit", 100)
SAMPLES: list[Sample] = []
SAMPLES_MESSAGE = "shipyard_stress_samples"
FORWARD_EVERY_S = 0.5


class ApiClient(FastHttpUser):
    retry_after_s = 0.0

    def wait_time(self) -> float:
        wait, self.retry_after_s = self.retry_after_s, 0.0
        return wait

    @task
    def call(self) -> None:
        route, body = next_request()
        with self.client.post(route, data=body.content, headers={"content-type": body.content_type}, name=route,
                              catch_response=True) as response:
            if response.status_code == 200:
                response.success()
            elif response.status_code in REFUSALS:
                response.request_meta["name"] = f"{route} [rejected]"
                retry_after = response.headers.get("Retry-After", "")
                self.retry_after_s = float(retry_after) if retry_after.isdigit() else 0.0
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, **kw) -> None:
    status = 0 if exception is not None and response is None else getattr(response, "status_code", 0) or 0
    SAMPLES.append((time.time(), name, float(response_time), int(status)))


# Distributed: each worker's (time, process CPU seconds) readings, as its messages brought them.
WORKER_CPU: dict[str, list[tuple[float, float]]] = {}


def _forward_samples(runner: WorkerRunner) -> None:
    """On a worker: hands the master what it measured since the last time, and its own CPU time
    (locust's heartbeats carry a CPU figure only every 10 s: too coarse for a step of a few seconds)."""
    batch = SAMPLES[:]
    del SAMPLES[:len(batch)]
    runner.send_message(SAMPLES_MESSAGE, {"worker": runner.client_id, "cpu": [time.time(), time.process_time()],
                                          "samples": batch})


def _received(msg, **_: object) -> None:
    """On the master: a worker's samples and CPU reading."""
    SAMPLES.extend(tuple(sample) for sample in msg.data["samples"])
    WORKER_CPU.setdefault(msg.data["worker"], []).append(tuple(msg.data["cpu"]))


def _cpu_share(readings: list[tuple[float, float]], start: float, end: float) -> float:
    """A process's CPU share (1.0: a whole core) between the first and last reading in [start - 1, end]."""
    inside = [(t, cpu) for t, cpu in readings if start - 1 <= t <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


@events.init.add_listener
def _distributed(environment, **kw) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(SAMPLES_MESSAGE, _received)
    elif isinstance(runner, WorkerRunner):
        def forward_forever() -> None:
            while True:
                gevent.sleep(FORWARD_EVERY_S)
                _forward_samples(runner)

        gevent.spawn(forward_forever)
        environment.events.test_stop.add_listener(lambda **_: _forward_samples(runner))


class SaturateOverloadRecover(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.phase = "steps"
        self.users = START
        self.phase_started: float | None = None
        self.seen = Phases()
        self.cpu_samples: list[tuple[float, float]] = []  # (time, process CPU seconds) per tick

    def _generator_cpu(self, start: float, end: float) -> float:
        """The generator's CPU share between two times: this process's, where the users run
        in-process, or the busiest worker's (from the readings workers send with their samples)."""
        if isinstance(self.runner, MasterRunner):
            return max((_cpu_share(readings, start, end) for readings in WORKER_CPU.values()), default=0.0)
        return _cpu_share(self.cpu_samples, start, end)

    def tick(self):
        now = time.time()
        self.cpu_samples.append((now, time.process_time()))
        if self.phase_started is None:
            self.phase_started = now
        elapsed = now - self.phase_started
        if self.phase == "steps":
            if elapsed < STEP_S:
                return self.users, 100
            # Judge the step on its second half: the first is the new users warming up.
            steps = self.seen.step_rps
            steps.append((self.users, answered_rps(SAMPLES, now - STEP_S / 2, now)))
            self.seen.step_cpu.append(self._generator_cpu(now - STEP_S / 2, now))
            flat = len(steps) > 1 and steps[-1][1] < steps[-2][1] * 1.1
            if flat or self.users + STEP > PEAK:
                best_users = max(steps, key=lambda x: x[1])[0]
                self.users = max(1, int(round(OVERLOAD_FACTOR * best_users)))
                self.seen.saturation_users, self.seen.overload_users = best_users, self.users
                self.phase, self.phase_started = "overload", now
                self.seen.overload_window = (now, now + OVERLOAD_S)
            else:
                self.users += STEP
                self.phase_started = now
            return self.users, 100 if self.phase == "steps" else 1000
        if self.phase == "overload":
            if elapsed < OVERLOAD_S:
                return self.users, 1000
            self.phase, self.phase_started, self.users = "recovery", now, START
            self.seen.recovery_started = now
            return self.users, 1000
        if elapsed < RECOVERY_S:
            return self.users, 1000
        return None


@events.quitting.add_listener
def _report(environment, **kw) -> None:
    shape = environment.shape_class
    if not isinstance(shape, SaturateOverloadRecover):
        return
    result = summarize(list(SAMPLES), shape.seen, P95_LIMIT)
    path = os.environ.get("SHIPYARD_STRESS_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
    else:
        print(json.dumps(result, indent=2))
