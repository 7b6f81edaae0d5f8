"""Real-time admission control: a late answer is useless (a decision that arrives after its
caller's timeout), so work that cannot finish within
its deadline is refused at the door (503 + Retry-After) instead of queueing until the client has
given up.

Each request has a deadline: the `X-Deadline-Ms` header (0.1..60000 ms) or the environment's
`SHIPYARD_DEADLINE_MS` (environment.yaml's `deadline_ms`). The scoring APIs run inline on the
worker's event loop (one ONNX call is tens of microseconds: a thread hop costs more), so the only
queue in front of the model is the event loop's own: requests read but not yet run. A probe
measures that queue's delay every few milliseconds (how late a 5 ms timer fires); the delay that
counts is the smallest of the last three probes, so a lone pause (a GC, a noisy neighbour) refuses
nothing and a sustained backlog does. A request is refused when that delay is over a quarter of
its deadline (keeping the queue that short is what keeps refusals fast: a refused request has
waited that long already), or when its deadline is shorter than the fastest answer of late on its route. Once
admitted, a request is answered: its handler runs to completion on the loop in about a
millisecond, so refusing it later would only waste the work already done.

Why not a concurrency limit: with inline handlers a worker has about one request in flight at a
time; the backlog is in the event loop, where only its delay is visible.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import math
import os
import time
from typing import Any, Awaitable, Callable

from .errors import error_body, send_json

DEADLINE_HEADER = b"x-deadline-ms"
MIN_DEADLINE_MS, MAX_DEADLINE_MS = 0.1, 60_000
_QUEUE_SHARE = 0.25  # of the deadline: the longest the event loop's queue may delay a request
_PROBE_S = 0.005
_SUSTAINED = 3  # probes
# The floor is only measured by answers. When it refuses everything, one request in this long is let
# through to measure it again: else a floor raised by a past overload would refuse for ever.
_REMEASURE_S = 1.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]



def default_deadline_ms() -> float:
    return float(os.environ.get("SHIPYARD_DEADLINE_MS", "100"))


class AdmissionState:
    """Per-process admission figures shared by the middleware and the API.

    The fastest answer of late is kept per route: a 1 000-row list and one row are different
    work, and one route's floor must not refuse (or admit) the other's requests."""

    def __init__(self) -> None:
        self.queue_delay_s = 0.0  # how late the event loop runs what is ready, sustained over a few probes
        self._recent: collections.deque[float] = collections.deque([0.0] * _SUSTAINED, maxlen=_SUSTAINED)
        self._floors: dict[str, list[float]] = {}  # route -> [fastest answer of late, monotonic time of last admission]
        self._probe: asyncio.Task | None = None

    def floor_s(self, route: str = "") -> float:
        """The fastest answer of late on `route`: drops at once, drifts up slowly (0: none yet)."""
        return self._floors.get(route, (0.0, 0.0))[0]

    def admits(self, deadline_s: float, now: float, route: str = "") -> bool:
        if self.queue_delay_s > deadline_s * _QUEUE_SHARE:
            return False
        floor = self._floors.setdefault(route, [0.0, 0.0])
        if deadline_s >= floor[0] or now - floor[1] >= _REMEASURE_S:
            floor[1] = now
            return True
        return False

    def record(self, elapsed_s: float, route: str = "") -> None:
        floor = self._floors.setdefault(route, [0.0, 0.0])
        floor[0] = elapsed_s if elapsed_s < floor[0] or not floor[0] else floor[0] + 0.01 * (elapsed_s - floor[0])

    def retry_after_s(self) -> int:
        """When the queue should have drained: what a polite client waits before retrying."""
        return max(1, math.ceil(self.queue_delay_s * 4))

    def start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_PROBE_S)
            self._recent.append(max(0.0, loop.time() - before - _PROBE_S))
            self.queue_delay_s = min(self._recent)


STATE = AdmissionState()


class DeadlineMiddleware:
    """ASGI middleware for the scoring paths; health, metrics and docs pass untouched."""

    def __init__(self, app: Callable, api_paths: tuple[str, ...], rejections: Any = None) -> None:
        self.app = app
        self.api_paths = set(api_paths)
        self.rejections = rejections  # a prometheus Counter with a `reason` label, or None
        self.default_ms = default_deadline_ms()
        self._counters: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_paths:
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        # A refusal must cost as little as possible (it competes with answers for the one core),
        # so the header is looked up in place and refusal bodies are made once (_refusal).
        header = next((v for k, v in scope["headers"] if k == DEADLINE_HEADER), None)
        deadline_ms = self.default_ms
        if header is not None:
            try:
                deadline_ms = float(header.decode("latin-1"))
                if not MIN_DEADLINE_MS <= deadline_ms <= MAX_DEADLINE_MS:
                    raise ValueError
            except ValueError:
                await send_json(send, 400, error_body(
                    "invalid_header", f"X-Deadline-Ms must be a number of milliseconds from {MIN_DEADLINE_MS:g} "
                                      f"to {MAX_DEADLINE_MS}", field="X-Deadline-Ms", rule="range"))
                return
        STATE.start_probe()
        route = scope["path"]
        if not STATE.admits(deadline_ms / 1000, arrived, route):
            await self._reject(send, "queue_too_long" if deadline_ms / 1000 >= STATE.floor_s(route)
                               else "deadline_too_short", deadline_ms)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            STATE.record(time.monotonic() - arrived, route)

    async def _reject(self, send: Send, reason: str, deadline_ms: float) -> None:
        if self.rejections is not None:
            counter = self._counters.get(reason)
            if counter is None:
                counter = self._counters[reason] = self.rejections.labels(reason=reason)
            counter.inc()
        headers, payload = _refusal(deadline_ms, STATE.retry_after_s())
        await send({"type": "http.response.start", "status": 503, "headers": list(headers)})
        await send({"type": "http.response.body", "body": payload})


@functools.lru_cache(maxsize=512)
def _refusal(deadline_ms: float, retry_after: int) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    """The 503's headers and body in the error contract's shape, made once per deadline and wait."""
    payload = json.dumps({**error_body("overloaded", f"cannot answer within the {deadline_ms:g} ms deadline; "
                                                     f"retry after {retry_after} s"), "fields": []}).encode()
    return ((b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"retry-after", str(retry_after).encode())), payload
