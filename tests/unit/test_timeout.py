"""shipyard_serving/timeout.py: one traffic timeout for both serving paths. Its timer ends with the
request, a request that overruns gets the error contract's 504, an answer that has started is never
cut, and runtime.install puts it where BentoML's worker takes its own. Real asyncio loop."""

from __future__ import annotations

import asyncio
import json

from shipyard_serving import runtime
from shipyard_serving.timeout import TimeoutMiddleware


def _run(app, timeout: float, kind: str = "http") -> tuple[list[dict], list[asyncio.TimerHandle]]:
    sent: list[dict] = []
    pending: list[asyncio.TimerHandle] = []

    async def main() -> None:
        middleware = TimeoutMiddleware(app, timeout=timeout)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await middleware({"type": kind, "method": "GET", "path": "/"}, receive, send)
        loop = asyncio.get_running_loop()
        pending.extend(h for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]

    asyncio.run(main())
    return sent, pending


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_timer_is_cancelled_when_the_request_is_done():
    sent, pending = _run(_answer, timeout=30)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert pending == [], "the request's timer outlived it and keeps its objects alive"


def test_a_request_that_overruns_gets_the_contracts_504():
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)

    sent, pending = _run(slow, timeout=0.05)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [504]
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert body["error"] == "timeout" and body["message"]
    assert pending == []


def test_an_answer_that_has_started_is_not_cut_by_the_timeout():
    async def slow_stream(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.2)  # four timeouts long
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent, _ = _run(slow_stream, timeout=0.05)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1]["body"] == b"late but whole"


def test_a_websocket_not_accepted_in_time_is_closed():
    async def never_accepts(scope, receive, send) -> None:
        await asyncio.sleep(5)

    sent, _ = _run(never_accepts, timeout=0.05, kind="websocket")
    assert sent == [{"type": "websocket.close", "code": 1011, "reason": "timeout"}]


def test_bentoml_serve_takes_the_same_middleware():
    from bentoml._internal.server.http import traffic

    runtime.install()
    assert traffic.TimeoutMiddleware is TimeoutMiddleware
    runtime.install()  # idempotent
    assert traffic.TimeoutMiddleware is TimeoutMiddleware
