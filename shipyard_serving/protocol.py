"""uvicorn's HTTP protocol with admission control at the door.

Under overload most requests are refused, so a refusal's cost decides how much of the core is
left for answers. Through ASGI a refusal costs what an answer's plumbing does: a scope, a task,
the middleware chain, and two socket writes (the status line and headers, then the body). Made
here, as soon as the headers are parsed, it is one prepared write and nothing else: measured in
docs/performance.md. The decision is the admission middleware's own (overload.DeadlineMiddleware),
so one rule decides on both paths; what this protocol does not refuse it hands to uvicorn
unchanged, marked as admitted so the middleware does not decide twice.

Only the cases where the answer is certain are taken here: an API route spelled exactly, a valid
or absent X-Deadline-Ms, no earlier response still being written on the connection (pipelining
keeps its order), no upgrade and no `Expect: 100-continue` (whose body may never come). Everything
else goes through ASGI as before.
"""

from __future__ import annotations

import time
from typing import Any

from .compat import http_tools_protocol

from .overload import ADMITTED_AT, STATE, DeadlineMiddleware, refusal

HttpToolsProtocol = http_tools_protocol()  # ImportError without httptools: server.py falls back to h11


class _NobodyWaits:
    """The cycle's message event, which nothing awaits: the refused request never reached the app."""

    def set(self) -> None:
        pass


class _Answered:
    """Stands where uvicorn keeps the request's cycle: its response is complete, so the request's
    body and end are ignored, and the next request on the connection starts at once. It has what
    uvicorn touches on a cycle when the connection is lost (`connection_lost` sets its message
    event), so a client that hangs up after a refusal is cleaned up like any other."""

    response_complete = True
    disconnected = False
    keep_alive = False
    message_event = _NobodyWaits()


_ANSWERED = _Answered()


def admitting_protocol(gate: DeadlineMiddleware, observe_many: Any) -> type[HttpToolsProtocol]:
    """A protocol class for uvicorn.Config(http=...): refuses with `gate`'s rule. Its refusals are
    counted in bulk after each admission probe (every few milliseconds), in the rejections metric
    and with `observe_many(endpoint, status, seconds)`, the request metrics' bulk call: one
    metric update per refusal cost a third more than the rest of the refusal did."""
    routes = {route.encode("ascii"): route for route in gate.api_paths}
    prepared: dict[tuple[float, int, bool], tuple[object, bytes]] = {}
    refusals: dict[tuple[str, str], list[float]] = {}  # (route, reason) -> seconds each refusal took

    def count_refusals() -> None:
        for (route, reason), seconds in refusals.items():
            if seconds:
                gate.count_rejections(reason, len(seconds))
                observe_many(route, 503, seconds)
                seconds.clear()

    STATE.after_probe.append(count_refusals)

    def response(protocol: HttpToolsProtocol, deadline_ms: float, keep_alive: bool) -> bytes:
        """The whole 503, uvicorn's default headers (its Date) included, made once per second."""
        defaults = protocol.server_state.default_headers
        key = (deadline_ms, STATE.retry_after_s(), keep_alive)
        made = prepared.get(key)
        if made is None or made[0] is not defaults:
            if len(prepared) >= 512:  # deadlines come from a header: any number of them
                prepared.clear()
            headers, payload = refusal(deadline_ms, key[1])
            lines = [b"HTTP/1.1 503 Service Unavailable\r\n"]
            lines += [name + b": " + value + b"\r\n" for name, value in [*defaults, *headers]]
            if not keep_alive:
                lines.append(b"connection: close\r\n")
            made = prepared[key] = (defaults, b"".join(lines) + b"\r\n" + payload)
        return made[1]

    class AdmittingProtocol(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            route = routes.get(self.url.partition(b"?")[0])
            if route is None or (self.cycle is not None and not self.cycle.response_complete) \
                    or self.parser.should_upgrade() or self.expect_100_continue:
                super().on_headers_complete()
                return
            arrived = time.monotonic()
            deadline_ms = gate.deadline_ms(self.headers)
            if deadline_ms is None:  # the middleware answers 400, naming the header
                super().on_headers_complete()
                return
            reason = gate.refused(route, deadline_ms, arrived, count=False)
            if reason is None:
                super().on_headers_complete()
                self.scope[ADMITTED_AT] = arrived  # type: ignore[literal-required]
                return
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            self.cycle = _ANSWERED  # type: ignore[assignment]
            self.transport.write(response(self, deadline_ms, keep_alive))
            tally = refusals.get((route, reason))
            if tally is None:
                tally = refusals[(route, reason)] = []
            tally.append(time.monotonic() - arrived)
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()

    return AdmittingProtocol
