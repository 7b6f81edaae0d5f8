"""shipyard_serving/runtime.py: the timeout middleware's timer ends with the request, and a request that
overruns still gets BentoML's 504. Real asyncio loop, real BentoML middleware base class."""

from __future__ import annotations

import asyncio
import json

from shipyard_serving import runtime


def _run(app, timeout: float) -> tuple[list[dict], list[asyncio.TimerHandle]]:
    runtime.install()
    from bentoml._internal.server.http import traffic

    sent: list[dict] = []
    pending: list[asyncio.TimerHandle] = []

    async def main() -> None:
        middleware = traffic.TimeoutMiddleware(app, timeout=timeout)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await middleware({"type": "http", "method": "GET", "path": "/"}, receive, send)
        loop = asyncio.get_running_loop()
        pending.extend(h for h in loop._scheduled  # type: ignore[attr-defined]
                       if not h.cancelled() and getattr(h._callback, "__name__", "") == "_set_timer_out")

    asyncio.run(main())
    return sent, pending


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_timer_is_cancelled_when_the_request_is_done():
    sent, pending = _run(_answer, timeout=30)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert pending == [], "the request's timer outlived it and keeps its context alive"


def test_a_request_that_overruns_still_gets_a_504():
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)

    sent, pending = _run(slow, timeout=0.05)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [504]
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert body["error"] == "timeout" and body["message"]
    assert pending == []


def test_install_is_idempotent():
    from bentoml._internal.server.http import traffic

    runtime.install()
    first = traffic.TimeoutMiddleware
    runtime.install()
    assert traffic.TimeoutMiddleware is first and first._shipyard
