"""Real-time admission control: a late answer is useless (a decision that arrives after its
caller's timeout), so work that cannot finish within its deadline is refused at the door (503 +
Retry-After) instead of queueing until the client has given up.

Each request has a deadline: the `X-Deadline-Ms` header (0.1..60000 ms) or the environment's
`SHIPYARD_DEADLINE_MS` (environment.yaml's `deadline_ms`). The scoring APIs run inline on the
worker's event loop (one ONNX call is tens of microseconds: a thread hop costs more). Admitted
requests of those APIs wait in this module's own queue (FIFO) and the loop runs at most CHUNK_S of
them per pass, so the sockets (and the refusals at the door) are read between chunks whatever the
backlog: a refusal's speed and the admission decision are separate. A request is refused when
- the wait it would see in that queue, the work admitted ahead of it (requests x what each of
  their routes runs on the loop, its awaits left out (LoopTime)) over the rate at which the loop
  has been getting through that work (measured over the passes it was busy, so CPU taken by a
  neighbour or a CFS quota is in it, and capped by the cgroup's quota: cgroup.py), plus its own
  run, is over a quarter of its deadline; or
- the loop's sustained delay (the least of the last three 5 ms probes: a lone pause refuses
  nothing) is over a quarter of its deadline; or
- its deadline is shorter than the fastest answer of late on its route.
Once admitted, a request is answered: refusing it later would waste the wait it has had.

Why a predicted wait and not the length of the loop's passes: under a CPU quota or beside a busy
neighbour, passes are stretched by the time the thread is not running, which is not overload (32
clients in a closed loop answered in 13 ms of a 100 ms deadline were refused 84-88 % of the time
under a 0.5 CPU quota by the pass-length rule: docs/performance.md). The drain rate takes the stolen
time into account as a slower loop, which is what it is.

Under overload most requests are refused, so a refusal must cost little: shipyard's server makes
the decision in its HTTP protocol (protocol.py) with this module's rule, before any ASGI work.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import math
import os
import time
from typing import Any, Callable

from . import cgroup
from .asgi import Message, Receive, Scope, Send
from .errors import error_body, send_json

DEADLINE_HEADER = b"x-deadline-ms"
MIN_DEADLINE_MS, MAX_DEADLINE_MS = 0.1, 60_000
_QUEUE_SHARE = 0.25  # of the deadline: the longest a request may wait for the loop
_PROBE_S = 0.005
_SUSTAINED = 3  # probes
# The most admitted work the loop starts in one pass. A pass also refuses what arrived during the
# last one, so at a refusal share r of the core a pass lasts CHUNK_S / (1 - r): short chunks keep
# passes (and so refusals, and the steps each answer goes through) short at the same throughput.
# (At 3 x saturation under a 1 CPU quota, 4 ms chunks: 11 ms passes, refusals' p99 25 ms, answers'
# p50 43 ms; 1 ms chunks: refusals' p99 6 ms, answers' p50 29 ms. docs/performance.md.)
CHUNK_S = 0.001
# The drain rate (seconds of admitted work run per second of wall time while the loop was busy) is
# the work the loop runs per second of its CPU, measured over _WORK_WINDOW_S of CPU (it changes at
# once when refusals start taking the core), times the share of the wall time the thread got the
# CPU, measured over _SHARE_WINDOW_S (a CFS period: a quota's stop is averaged in, not taken as
# a stalled loop) and capped by the cgroup's quota.
_WORK_WINDOW_S = 0.010
_SHARE_WINDOW_S = 0.100
_RATE_MIN = 0.02
# Seconds between unchained ticks that forget a drain rate measured under load. Long, because a
# quota's stop between two unchained ticks looks the same as idling (50 ms of it forgets 5 %).
_RELAX_S = 1.0
# A route's cost: the mean of its first runs, then a moving average over about this many (under
# a quota, the runs right after a stop cost twice the others: cold caches).
_COST_RUNS = 100
_QUOTA_EVERY = 200  # probes: the cgroup's quota is read again about once a second
# The floor is only measured by answers. When it refuses everything, one request in this long is let
# through to measure it again: else a floor raised by a past overload would refuse for ever.
_REMEASURE_S = 1.0


def default_deadline_ms() -> float:
    return float(os.environ.get("SHIPYARD_DEADLINE_MS", "100"))


class AdmissionState:
    """Per-process admission figures shared by the protocol, the middleware and the API.

    The fastest answer of late and the cost of a run are kept per route: a 1 000-row list and one
    row are different work, and one route's figures must not refuse (or admit) the other's requests.

    Admitted work is counted from the moment it is admitted, not when it starts: the event loop
    reads every ready connection in one pass, so under overload a thousand requests are decided
    before the first of them runs; counting what was let in refuses the rest of the pass."""

    def __init__(self) -> None:
        self.queue_delay_s = 0.0  # how late the event loop runs what is ready, sustained over a few probes
        self._recent: collections.deque[float] = collections.deque([0.0] * _SUSTAINED, maxlen=_SUSTAINED)
        self._floors: dict[str, list[float]] = {}  # route -> [fastest answer of late, monotonic time of last admission]
        # route -> [requests admitted and not started, seconds one runs, runs timed (-1: none yet)]
        self._work: dict[str, list[float]] = {}
        # The routes whose work runs on the event loop (async APIs; None: every route). A sync API
        # runs in a thread pool: its requests do not lengthen the loop's passes, and its run time
        # includes its wait for a thread (the service's `threads`, 1 by default), so counting it
        # refused a fifth of a 40 requests/s load on a sync service. Its queue shows as its floor.
        self.loop_routes: set[str] | None = None
        self.work_per_cpu = 1.0  # seconds of admitted work run per second of the thread's CPU
        self.cpu_share = 1.0  # of the wall time, the thread's CPU while it had work
        self.quota_cpus = 1.0  # the cgroup's CFS quota (cgroup.py), read by the probe: caps the share
        self.drain_rate = 1.0  # their product: seconds of admitted work run per second
        self._pending = 0  # requests admitted on loop routes and not started
        self._waiting: collections.deque[tuple[asyncio.Future, str]] = collections.deque()
        self._started_s = 0.0  # admitted work started since the last tick
        self._tick_armed = False
        self._chained = False  # this tick was armed by the last one: the loop was busy in between
        self._last_tick = (0.0, 0.0)  # (wall, thread CPU) at the last tick
        self._work_window = [0.0, 0.0]  # [work started, CPU] over busy passes
        self._share_window = [0.0, 0.0]  # [CPU, wall] over busy passes
        self.after_probe: list[Callable[[], None]] = []  # run after each probe (bulk metric updates)
        self._probe: asyncio.Task | None = None

    def floor_s(self, route: str = "") -> float:
        """The fastest answer of late on `route`: drops at once, drifts up slowly (0: none yet)."""
        return self._floors.get(route, (0.0, 0.0))[0]

    def admitted_work_s(self) -> float:
        """Seconds of loop work admitted and not started, at what each route's requests take to run."""
        return sum(work[0] * work[1] for work in self._work.values())

    def wait_s(self) -> float:
        """How long a request admitted now would wait for the loop to start it."""
        return self.admitted_work_s() / self.drain_rate

    def admits(self, deadline_s: float, now: float, route: str = "") -> bool:
        work = self._work.get(route)
        if work is None and (self.loop_routes is None or route in self.loop_routes):
            work = self._work[route] = [0.0, 0.0, -1.0]
        floor = self._floors.setdefault(route, [0.0, 0.0])
        queue_s = deadline_s * _QUEUE_SHARE
        # With nothing admitted ahead a request is let in whatever its cost: else a route whose
        # run is longer than a quarter of its deadline could never be served.
        ahead = self.admitted_work_s() if work is not None else 0.0
        if self.queue_delay_s <= queue_s \
                and not (ahead and ahead / self.drain_rate + work[1] > queue_s) \
                and (deadline_s >= floor[0] or now - floor[1] >= _REMEASURE_S):
            floor[1] = now
            if work is not None:
                work[0] += 1
                self._pending += 1
            return True
        return False

    # -- the loop's own queue: admitted work starts in chunks -------------------------------------

    def may_start(self, route: str) -> bool:
        """Whether an admitted request on `route` starts now: nothing waits before it and this
        pass has room. True counts it as started; False: await `turn(route)`."""
        work = self._work.get(route)
        if work is None:  # not a loop route: its queue is a thread pool's
            return True
        if self._waiting or self._started_s >= CHUNK_S:
            return False
        self._start(work)
        self._arm()
        return True

    async def turn(self, route: str) -> None:
        """Waits for the request's turn in the queue (FIFO): a later pass with room."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, route))
        self._arm()
        await future

    def _start(self, work: list[float]) -> None:
        if work[0] >= 1:
            work[0] -= 1
            self._pending -= 1
        self._started_s += work[1]

    def _arm(self) -> None:
        if not self._tick_armed:
            self._tick_armed = True
            asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        """Once a pass while there is admitted work: the pass's room is renewed, the next chunk of
        waiting work released, and the drain rate measured over the passes the loop was busy."""
        self._tick_armed = False
        self.tick(time.perf_counter(), time.thread_time())
        if self._pending:
            self._tick_armed = self._chained = True
            asyncio.get_running_loop().call_soon(self._tick)

    def tick(self, now: float, cpu: float) -> None:
        """`now` on the wall clock, `cpu` the thread's CPU time. Between two chained ticks the loop
        never waited for a socket (a ready callback makes it poll without blocking): that wall time
        was the thread's CPU and whatever the core or the quota took from it."""
        if not self._chained:
            # The loop waited for sockets since the last tick: it had CPU to spare, so what was
            # measured under load (an overload's refusals, a neighbour's burst) is forgotten at
            # the rate it idles. Else a rate measured at the end of an overload would refuse a
            # light load after it for ever: nothing chains ticks to measure it again.
            relax = min(1.0, (now - self._last_tick[0]) / _RELAX_S)
            self.work_per_cpu += relax * (1.0 - self.work_per_cpu)
            self.cpu_share += relax * (1.0 - self.cpu_share)
            self.drain_rate = max(_RATE_MIN, self.work_per_cpu * min(self.cpu_share, self.quota_cpus))
        else:
            self._chained = False
            wall_s, cpu_s = now - self._last_tick[0], cpu - self._last_tick[1]
            work = self._work_window
            work[0] += self._started_s
            work[1] += cpu_s
            if work[1] >= _WORK_WINDOW_S:
                self.work_per_cpu += 0.5 * (min(1.0, work[0] / work[1]) - self.work_per_cpu)
                work[0] = work[1] = 0.0
            share = self._share_window
            share[0] += cpu_s
            share[1] += wall_s
            if share[1] >= _SHARE_WINDOW_S:  # averaged over windows: one with two stops in it read 0.34 of 0.5
                self.cpu_share += 0.5 * (min(1.0, share[0] / share[1]) - self.cpu_share)
                share[0] = share[1] = 0.0
            self.drain_rate = max(_RATE_MIN, self.work_per_cpu * min(self.cpu_share, self.quota_cpus))
        self._last_tick = (now, cpu)
        self._started_s = 0.0
        waiting = self._waiting
        while waiting and self._started_s < CHUNK_S:
            future, route = waiting.popleft()
            self._start(self._work[route])
            if not future.done():  # a cancelled wait (the server stopping) still leaves the queue
                future.set_result(None)

    def record(self, elapsed_s: float, route: str = "", ran_s: float | None = None) -> None:
        """An admitted request is done: `elapsed_s` since it arrived, `ran_s` of it its own run."""
        floor = self._floors.setdefault(route, [0.0, 0.0])
        floor[0] = elapsed_s if elapsed_s < floor[0] or not floor[0] else floor[0] + 0.01 * (elapsed_s - floor[0])
        work = self._work.get(route)
        if work is not None and ran_s is not None:
            # A route's first run (the model's first call, cold caches) is no measure: it took 50
            # times a later one, and a fresh server refused the rest of its first burst for it.
            # Then the mean of the runs, and past _COST_RUNS a moving average.
            if work[2] < _COST_RUNS:
                work[2] += 1
            if work[2] > 0:
                work[1] += (ran_s - work[1]) / work[2]

    def retry_after_s(self) -> int:
        """When the queue should have drained: what a polite client waits before retrying."""
        return max(1, math.ceil(self.queue_delay_s * 4))

    def start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        probes = 0
        while True:
            if probes % _QUOTA_EVERY == 0:  # a pod's quota can be resized in place
                self.quota_cpus = min(1.0, cgroup.quota_cpus() or 1.0)
            probes += 1
            # The clock, not loop.time(): the loop's time is read once a pass, so it would count
            # the part of the pass already run before this probe as lateness.
            before = time.perf_counter()
            await asyncio.sleep(_PROBE_S)
            self.observe_pass(max(0.0, time.perf_counter() - before - _PROBE_S))
            for hook in self.after_probe:
                hook()

    def observe_pass(self, late_s: float) -> None:
        """One probe: its timer fired `late_s` late, about the length of the loop's last pass."""
        self._recent.append(late_s)
        self.queue_delay_s = min(self._recent)

STATE = AdmissionState()


ADMITTED_AT = "shipyard.admitted_at"  # scope key: the HTTP protocol admitted this request already, at this time


class DeadlineMiddleware:
    """ASGI middleware for the scoring paths; health, metrics and docs pass untouched.

    It also holds the decision the HTTP protocol makes at the door (protocol.py): under overload
    most requests are refused, and a refusal made there costs no ASGI task, scope or middleware."""

    def __init__(self, app: Callable, api_paths: tuple[str, ...], rejections: Any = None,
                 loop_paths: tuple[str, ...] | None = None, timeout_s: float | None = None) -> None:
        self.app = app
        self.api_paths = set(api_paths)
        if loop_paths is not None:
            STATE.loop_routes = set(loop_paths)
        self.rejections = rejections  # a prometheus Counter with a `reason` label, or None
        # The service's traffic timeout bounds every deadline: a request still waiting then gets
        # the timeout's 504 (a server error) whatever its caller would wait, so admitting it on a
        # longer deadline only turns a fast 503 into a slow 504 (an overload queued behind a 60 s
        # deadline did exactly that: stress, make test, stop 41).
        self.cap_ms = timeout_s * 1000 if timeout_s else MAX_DEADLINE_MS
        self.default_ms = min(default_deadline_ms(), self.cap_ms)
        self._counters: dict[str, Any] = {}

    def deadline_ms(self, headers: list[tuple[bytes, bytes]]) -> float | None:
        """The request's deadline: its header's, else the default, at most the service's traffic
        timeout; None when the header breaks its rule. The header is looked up in place: a refusal
        must cost as little as possible."""
        header = next((v for k, v in headers if k == DEADLINE_HEADER), None)
        if header is None:
            return self.default_ms
        try:
            deadline_ms = float(header.decode("latin-1"))
        except ValueError:
            return None
        return min(deadline_ms, self.cap_ms) if MIN_DEADLINE_MS <= deadline_ms <= MAX_DEADLINE_MS else None

    def refused(self, route: str, deadline_ms: float, arrived: float, count: bool = True) -> str | None:
        """Why this request is refused, or None: admitted. The refusal is counted in the rejections
        metric unless `count` is False: then the caller counts it (count_rejections), in bulk."""
        STATE.start_probe()
        if STATE.admits(deadline_ms / 1000, arrived, route):
            return None
        reason = "queue_too_long" if deadline_ms / 1000 >= STATE.floor_s(route) else "deadline_too_short"
        if count:
            self.count_rejections(reason, 1)
        return reason

    def count_rejections(self, reason: str, n: int) -> None:
        if self.rejections is not None:
            counter = self._counters.get(reason)
            if counter is None:
                counter = self._counters[reason] = self.rejections.labels(reason=reason)
            counter.inc(n)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_paths:
            await self.app(scope, receive, send)
            return
        route = scope["path"]
        arrived = scope.get(ADMITTED_AT)
        if arrived is None:
            arrived = time.monotonic()
            deadline_ms = self.deadline_ms(scope["headers"])
            if deadline_ms is None:
                await send_json(send, 400, error_body(
                    "invalid_header", f"X-Deadline-Ms must be a number of milliseconds from {MIN_DEADLINE_MS:g} "
                                      f"to {MAX_DEADLINE_MS}", field="X-Deadline-Ms", rule="range"))
                return
            if self.refused(route, deadline_ms, arrived) is not None:
                headers, payload = refusal(deadline_ms, STATE.retry_after_s())
                await send({"type": "http.response.start", "status": 503, "headers": list(headers)})
                await send({"type": "http.response.body", "body": payload})
                return
        if STATE.loop_routes is not None and route not in STATE.loop_routes:
            # Served in a thread pool: only the answer's time counts (its floor), so no step timing.
            try:
                await self.app(scope, receive, send)
            finally:
                STATE.record(time.monotonic() - arrived, route)
            return
        if not STATE.may_start(route):
            await STATE.turn(route)
            # Its client may have left while it waited: then it is not run at all (its body would
            # read as empty, and the service would answer nobody, or log a validation error).
            first = await receive()
            if first["type"] == "http.disconnect":
                return
            receive = _replaying(first, receive)
        run = LoopTime(self.app(scope, receive, send))
        try:
            await run
        finally:
            STATE.record(time.monotonic() - arrived, route, ran_s=run.busy_s)


def _replaying(first: Message, receive: Receive) -> Receive:
    """`receive` with `first`, a message already taken from it, put back in front."""
    taken: list[Message] = [first]

    async def replayed() -> Message:
        return taken.pop() if taken else await receive()

    return replayed


class LoopTime:
    """Awaits a coroutine and adds up how long its steps ran on the event loop, leaving out the
    time it waited (for a dependency's answer, a model server, a thread, the request's body).

    What a request costs the loop is what admission must count: an async API that awaits a
    `bentoml.depends` service for 20 ms occupies the loop for a fraction of a millisecond, and
    counting its wall time as loop work refused a third of a 40 requests/s load. Steps are timed
    on the thread's CPU clock: a step during which the thread was stopped (a quota's throttling, a
    neighbour on the core) timed the stop, 50 ms for a 0.2 ms request, on the wall clock. (Work a
    step hands to other threads and waits for is left out too; the wait admission predicts is in
    the same units as the rate it measures (work per second), so a cost counted short cancels.)"""

    __slots__ = ("coro", "busy_s")

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.busy_s = 0.0

    def __await__(self) -> Any:
        coro, value, error = self.coro, None, None
        while True:
            started = time.thread_time()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as done:
                self.busy_s += time.thread_time() - started
                return done.value
            except BaseException:
                self.busy_s += time.thread_time() - started
                raise
            self.busy_s += time.thread_time() - started
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # noqa: BLE001 - cancellation and the like go to the coroutine
                value, error = None, exc


@functools.lru_cache(maxsize=512)
def refusal(deadline_ms: float, retry_after: int) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    """The 503's headers and body in the error contract's shape, made once per deadline and wait."""
    payload = json.dumps({**error_body("overloaded", f"cannot answer within the {deadline_ms:g} ms deadline; "
                                                     f"retry after {retry_after} s"), "fields": []}).encode()
    return ((b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"retry-after", str(retry_after).encode())), payload
