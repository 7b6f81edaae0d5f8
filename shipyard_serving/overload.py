"""Real-time admission control: a late answer is useless (a decision that arrives after its
caller's timeout), so work that cannot finish within its deadline is refused at the door (503 +
Retry-After) instead of queueing until the client has given up.

Each request has a deadline: the `X-Deadline-Ms` header (0.1..60000 ms) or the environment's
`SHIPYARD_DEADLINE_MS` (environment.yaml's `deadline_ms`). The scoring APIs run inline on the
worker's event loop (one ONNX call is tens of microseconds: a thread hop costs more), so the only
queue in front of the model is the event loop's own. A request is refused when
- the loop's sustained delay (the least of the last three 5 ms probes: a lone pause refuses
  nothing) is over a quarter of its deadline; or
- the work already admitted and not done on the loop (requests in flight x what each runs on the
  loop, its awaits left out (LoopTime), per route served by an async API) would, with it, pass the budget: the smaller of a quarter of its deadline and the budget the loop's
  passes allow (_PASS_S below: short passes are what keep refusals fast under overload); or
- its deadline is shorter than the fastest answer of late on its route.
Once admitted, a request is answered: its handler runs to completion on the loop in about a
millisecond, so refusing it later would only waste the work already done.

Under overload most requests are refused, so a refusal must cost little: shipyard's server makes
the decision in its HTTP protocol (protocol.py) with this module's rule, before any ASGI work.

Why not a plain concurrency limit: the right limit depends on what each request costs and on how
much of the core refusals take; the budget is that limit, in seconds of work, and adapts.
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

from .asgi import Receive, Scope, Send
from .errors import error_body, send_json

DEADLINE_HEADER = b"x-deadline-ms"
MIN_DEADLINE_MS, MAX_DEADLINE_MS = 0.1, 60_000
_QUEUE_SHARE = 0.25  # of the deadline: the longest the event loop's queue may delay a request
_PROBE_S = 0.005
# The most admitted work waiting at once (its budget) adapts to the length of the event loop's passes.
# The loop answers what it admitted in one pass, and a request that arrives during a pass waits for
# its end even to be refused: a short pass is a fast refusal. A pass longer than _PASS_S while
# requests are being refused shrinks the budget by (_PASS_S / pass)^2 (overload starts as a step: a
# gentler cut let its first passes run 20-40 ms); each shorter pass lets it grow back by a step,
# between the bounds. Long passes with nothing refused cut nothing: 32 clients in a closed loop
# make 5 ms passes that hurt nobody, and cutting on them refused a fifth of their requests.
# (Waiting for two long passes in a row, to ignore lone pauses, doubled the refusals' p99.)
_PASS_S = 0.005
_BUDGET_MIN_S, _BUDGET_MAX_S, _BUDGET_STEP_S = 0.001, 0.025, 0.0002
_BUDGET_DEADLINE_S = 0.100  # the deadline these bounds are for; a longer one scales them
_SUSTAINED = 3  # probes
# The floor is only measured by answers. When it refuses everything, one request in this long is let
# through to measure it again: else a floor raised by a past overload would refuse for ever.
_REMEASURE_S = 1.0




def default_deadline_ms() -> float:
    return float(os.environ.get("SHIPYARD_DEADLINE_MS", "100"))


class AdmissionState:
    """Per-process admission figures shared by the middleware and the API.

    The fastest answer of late is kept per route: a 1 000-row list and one row are different
    work, and one route's floor must not refuse (or admit) the other's requests.

    The queue that counts is the longer of two: the event loop's measured delay, and the work
    admitted but not finished yet (per route: requests in flight x what one took of late, its own
    run, not its wait). The second is what keeps a burst honest: the event loop reads every ready
    connection in one pass, so under overload a thousand requests are decided before the probe
    can measure what admitting them did; counting what was let in refuses the rest of the pass."""

    def __init__(self) -> None:
        self.queue_delay_s = 0.0  # how late the event loop runs what is ready, sustained over a few probes
        self._recent: collections.deque[float] = collections.deque([0.0] * _SUSTAINED, maxlen=_SUSTAINED)
        self._floors: dict[str, list[float]] = {}  # route -> [fastest answer of late, monotonic time of last admission]
        self._work: dict[str, list[float]] = {}  # route -> [requests admitted and not finished, seconds one runs]
        # The routes whose work runs on the event loop (async APIs; None: every route). A sync API
        # runs in a thread pool: its requests do not lengthen the loop's passes, and its run time
        # includes its wait for a thread (the service's `threads`, 1 by default), so counting it
        # refused a fifth of a 40 requests/s load on a sync service. Its queue shows as its floor.
        self.loop_routes: set[str] | None = None
        self.budget_s = _BUDGET_MAX_S  # the most admitted work waiting at once (see _PASS_S)
        self._refusals = 0  # since the last probe
        self.after_probe: list[Callable[[], None]] = []  # run after each probe (bulk metric updates)
        self._probe: asyncio.Task | None = None

    def floor_s(self, route: str = "") -> float:
        """The fastest answer of late on `route`: drops at once, drifts up slowly (0: none yet)."""
        return self._floors.get(route, (0.0, 0.0))[0]

    def admitted_work_s(self) -> float:
        """Seconds of work admitted and not finished, at what each route's requests take to run."""
        return sum(count * cost for count, cost in self._work.values())

    def admits(self, deadline_s: float, now: float, route: str = "") -> bool:
        work = self._work.get(route)
        if work is None and (self.loop_routes is None or route in self.loop_routes):
            work = self._work[route] = [0.0, 0.0]
        admitted = self.admitted_work_s()
        floor = self._floors.setdefault(route, [0.0, 0.0])
        # The budget's bounds were measured for the default 100 ms deadline; a request that may
        # wait longer may queue behind proportionally more work (a 60 s deadline behind 48 ms of
        # it, which two busy shared cores make of 16 clients, was refused).
        budget_s = self.budget_s * max(1.0, deadline_s / _BUDGET_DEADLINE_S)
        if self.queue_delay_s <= deadline_s * _QUEUE_SHARE \
                and not (work and admitted and admitted + work[1] > min(deadline_s * _QUEUE_SHARE, budget_s)) \
                and (deadline_s >= floor[0] or now - floor[1] >= _REMEASURE_S):
            floor[1] = now
            if work:
                work[0] += 1
            return True
        self._refusals += 1
        return False

    def record(self, elapsed_s: float, route: str = "", ran_s: float | None = None) -> None:
        """An admitted request is done: `elapsed_s` since it arrived, `ran_s` of it its own run."""
        floor = self._floors.setdefault(route, [0.0, 0.0])
        floor[0] = elapsed_s if elapsed_s < floor[0] or not floor[0] else floor[0] + 0.01 * (elapsed_s - floor[0])
        work = self._work.get(route)
        if work is not None and ran_s is not None:
            work[0] = max(0.0, work[0] - 1)
            work[1] = ran_s if not work[1] else work[1] + 0.05 * (ran_s - work[1])

    def retry_after_s(self) -> int:
        """When the queue should have drained: what a polite client waits before retrying."""
        return max(1, math.ceil(self.queue_delay_s * 4))

    def start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        while True:
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
        refusing, self._refusals = self._refusals, 0
        if late_s > _PASS_S and refusing:  # a pass 3 x too long keeps a ninth: overload's onset is a step
            self.budget_s = max(_BUDGET_MIN_S, self.budget_s * (_PASS_S / late_s) ** 2)
        else:
            self.budget_s = min(_BUDGET_MAX_S, self.budget_s + _BUDGET_STEP_S)


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
        run = LoopTime(self.app(scope, receive, send))
        try:
            await run
        finally:
            STATE.record(time.monotonic() - arrived, route, ran_s=run.busy_s)


class LoopTime:
    """Awaits a coroutine and adds up how long its steps ran on the event loop, leaving out the
    time it waited (for a dependency's answer, a model server, a thread, the request's body).

    What a request costs the loop is what admission must count: an async API that awaits a
    `bentoml.depends` service for 20 ms occupies the loop for a fraction of a millisecond, and
    counting its wall time as loop work refused a third of a 40 requests/s load."""

    __slots__ = ("coro", "busy_s")

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.busy_s = 0.0

    def __await__(self) -> Any:
        coro, value, error = self.coro, None, None
        while True:
            started = time.perf_counter()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as done:
                self.busy_s += time.perf_counter() - started
                return done.value
            except BaseException:
                self.busy_s += time.perf_counter() - started
                raise
            self.busy_s += time.perf_counter() - started
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
