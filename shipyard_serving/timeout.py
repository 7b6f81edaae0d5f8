"""The service's traffic timeout (`traffic.timeout`): one middleware for both serving paths.

shipyard's server wraps each API's work in it, and runtime.py installs it in place of BentoML's own
for the `bentoml serve` hand-over. Why not BentoML's: it schedules `loop.call_later(timeout, ...)`
for every request and never cancels it, so the timer keeps the request's contextvars Context (an
OpenTelemetry span, its attributes and locks) alive for the whole timeout: at 1 500 requests/s and
a 10 s timeout, ~300 000 live objects, and full garbage collections that stall the loop for
90-200 ms (docs/performance.md). It also runs every request as a second task (~35 us).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from .asgi import Message, Receive, Scope, Send


class TimeoutMiddleware:
    """A request not answered within `timeout` seconds gets a 504 in the error contract's shape
    (a WebSocket not accepted in time is closed); one timer per request, cancelled as soon as the
    answer starts, so a long streamed answer is never cut half-way. Same signature as BentoML's
    (app, timeout), so it replaces it where BentoML builds its middleware stack."""

    def __init__(self, app: Callable, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if not started:
                started = True
                window.reschedule(None)  # answering: no longer cancelled half-way through its body
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as window:
                await self.app(scope, receive, sending)
        except TimeoutError:
            if started:
                raise
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011, "reason": "timeout"})
                return
            from .errors import send_json, timeout_body

            await send_json(send, 504, timeout_body(self.timeout))
