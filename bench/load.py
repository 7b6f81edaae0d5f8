"""The benchmarks' load generator: closed loop (N clients, each waits for its answer) and open
loop (requests at a fixed rate, whatever the answers do). aiohttp with bodies encoded once, so
the generator costs little; its own CPU is measured and reported with every result, so a result
where the client was the bottleneck says so. Every loop is bounded in count and time, and only
ever targets 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

CLIENT_BOUND_CPU = 0.9  # the generator used 90 % of its core or more: the result may be the client's limit


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    answered_ms: list[float] = field(default_factory=list)
    rejected_ms: list[float] = field(default_factory=list)
    errors: int = 0
    dropped: int = 0  # open loop: not sent because max_outstanding requests were already waiting
    wall_s: float = 0.0
    client_cpu: float = 0.0
    rows_per_request: int = 1

    def summary(self) -> dict[str, Any]:
        answered = len(self.answered_ms)
        return {
            "answered_rps": round(answered / self.wall_s, 1) if self.wall_s else None,
            "rows_per_s": round(answered * self.rows_per_request / self.wall_s, 1) if self.wall_s else None,
            "p50_ms": _round(percentile(self.answered_ms, 0.50)),
            "p99_ms": _round(percentile(self.answered_ms, 0.99)),
            "rejected": len(self.rejected_ms),
            "rejection_p99_ms": _round(percentile(self.rejected_ms, 0.99)),
            "errors": self.errors,
            "dropped": self.dropped,
            "client_cpu": round(self.client_cpu, 2),
            "client_bound": self.client_cpu >= CLIENT_BOUND_CPU,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def encode(bodies: list[Any]) -> list[bytes]:
    return [json.dumps(b).encode() for b in bodies]


async def _send(session, url: str, body: bytes, result: Result, headers: dict[str, str]) -> None:
    import aiohttp

    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status == 200:
                result.answered_ms.append(elapsed)
            elif response.status == 503:
                result.rejected_ms.append(elapsed)
            else:
                result.errors += 1
    except (aiohttp.ClientError, asyncio.TimeoutError):
        result.errors += 1


def closed_loop(url: str, bodies: list[bytes], clients: int, requests: int, limit_s: float = 120,
                rows_per_request: int = 1) -> dict[str, Any]:
    """`clients` connections each sending its next request when the last is answered, until
    `requests` were sent or `limit_s` passed."""

    async def run() -> Result:
        import aiohttp

        result = Result(rows_per_request=rows_per_request)
        remaining = requests
        headers = {"Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            deadline = time.monotonic() + limit_s

            async def client() -> None:
                nonlocal remaining
                while remaining > 0 and time.monotonic() < deadline:
                    remaining -= 1
                    await _send(session, url, random.choice(bodies), result, headers)

            cpu0, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            result.wall_s = time.perf_counter() - start
            result.client_cpu = (time.process_time() - cpu0) / result.wall_s
        return result

    return asyncio.run(run()).summary()


def open_loop(url: str, bodies: list[bytes], rate: float, duration_s: float, max_outstanding: int = 512) -> dict[str, Any]:
    """Requests sent at `rate` per second for `duration_s`, each on its own, answered or not:
    how real independent clients offer load. Waits for the last answers (bounded by the timeout)."""

    async def run() -> Result:
        import aiohttp

        result = Result()
        headers = {"Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=max_outstanding)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks: set[asyncio.Task] = set()
            total = int(rate * duration_s)
            cpu0, start = time.process_time(), time.perf_counter()
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= max_outstanding:
                    result.dropped += 1
                    continue
                task = asyncio.create_task(_send(session, url, random.choice(bodies), result, headers))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=35)
            result.wall_s = duration_s
            result.client_cpu = (time.process_time() - cpu0) / (time.perf_counter() - start)
        return result

    out = asyncio.run(run()).summary()
    out["offered_rps"] = rate
    return out
