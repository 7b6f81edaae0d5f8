"""Real-time admission control: a late fraud score is useless, so work that cannot finish within
its deadline is refused at the door (503 + Retry-After, in well under a millisecond of server
time) instead of queueing until the client has given up.

Each request has a deadline: the `X-Deadline-Ms` header (1..60000) or the environment's
`SHIPYARD_DEADLINE_MS` (environment.yaml's `deadline_ms`). The middleware keeps, per worker, the
number of requests in flight and a moving estimate of what one request costs (time in the app
divided by the requests it queued behind). A request whose predicted finish, (in flight + 1) x
cost, passes its deadline is refused before its body is read. A request admitted but delayed
anyway (a burst, a slow neighbour) is refused again just before the model, if its deadline has
passed by then (`expired()`, called by the API).
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import time
from typing import Any, Awaitable, Callable

DEADLINE_HEADER = b"x-deadline-ms"
MAX_DEADLINE_MS = 60_000
_INITIAL_COST_S = 0.005
_SMOOTHING = 0.1

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_deadline_at: contextvars.ContextVar[float | None] = contextvars.ContextVar("shipyard_deadline_at", default=None)


def default_deadline_ms() -> float:
    return float(os.environ.get("SHIPYARD_DEADLINE_MS", "100"))


class AdmissionState:
    """Per-process load figures shared by the middleware and the API."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.cost_s = _INITIAL_COST_S
        self.rejected = 0

    def predicted_finish_s(self) -> float:
        return (self.in_flight + 1) * self.cost_s

    def record(self, elapsed_s: float, queued_behind: int) -> None:
        sample = elapsed_s / (queued_behind + 1)
        self.cost_s += _SMOOTHING * (sample - self.cost_s)

    def retry_after_s(self) -> int:
        """When the queue ahead should have drained: what a polite client waits before retrying."""
        return max(1, math.ceil(self.in_flight * self.cost_s))


STATE = AdmissionState()


def expired() -> bool:
    """True when the current request's deadline has passed: the API answers 503 without scoring."""
    deadline_at = _deadline_at.get()
    return deadline_at is not None and time.monotonic() > deadline_at


def retry_after_s() -> int:
    return STATE.retry_after_s()


def _json(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> tuple[dict, dict]:
    payload = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                         *headers]}
    return start, {"type": "http.response.body", "body": payload}


class DeadlineMiddleware:
    """ASGI middleware for the scoring paths; health, metrics and docs pass untouched."""

    def __init__(self, app: Callable, api_paths: tuple[str, ...] = ("/score", "/score_batch"),
                 rejections: Any = None) -> None:
        self.app = app
        self.api_paths = set(api_paths)
        self.rejections = rejections  # a prometheus Counter with a `reason` label, or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_paths:
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        header = dict(scope.get("headers") or []).get(DEADLINE_HEADER)
        deadline_ms = default_deadline_ms()
        if header is not None:
            try:
                deadline_ms = float(header.decode("latin-1"))
                if not 1 <= deadline_ms <= MAX_DEADLINE_MS:
                    raise ValueError
            except ValueError:
                start, body = _json(400, {"error": "invalid_header", "message": "X-Deadline-Ms must be a number of "
                                          f"milliseconds from 1 to {MAX_DEADLINE_MS}",
                                          "fields": [{"field": "X-Deadline-Ms", "rule": "range",
                                                      "message": f"1..{MAX_DEADLINE_MS}"}]}, [])
                await send(start)
                await send(body)
                return
        if STATE.predicted_finish_s() * 1000 > deadline_ms:
            await self._reject(send, "predicted_late", deadline_ms)
            return
        queued_behind = STATE.in_flight
        STATE.in_flight += 1
        token = _deadline_at.set(arrived + deadline_ms / 1000)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline_at.reset(token)
            STATE.in_flight -= 1
            STATE.record(time.monotonic() - arrived, queued_behind)

    async def _reject(self, send: Send, reason: str, deadline_ms: float) -> None:
        STATE.rejected += 1
        if self.rejections is not None:
            self.rejections.labels(reason=reason).inc()
        start, body = overloaded_response(deadline_ms)
        await send(start)
        await send(body)


def overloaded_body(deadline_ms: float) -> dict[str, Any]:
    return {"error": "overloaded", "message": f"cannot answer within the {deadline_ms:g} ms deadline; "
                                              f"retry after {STATE.retry_after_s()} s",
            "fields": []}


def overloaded_response(deadline_ms: float) -> tuple[dict, dict]:
    return _json(503, overloaded_body(deadline_ms), [(b"retry-after", str(STATE.retry_after_s()).encode())])
