"""Helpers shared by the benchmarks: a served process on loopback, a bounded load loop, stats."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from shipyard.targets import wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
TRANSACTION = {
    "transaction_id": "bench-1", "amount": 42.5, "currency": "EUR", "merchant_category": "5411",
    "country": "DE", "hour": 14, "card_present": True, "distance_from_home_km": 3.2,
    "transactions_last_24h": 2, "account_age_days": 800, "avg_amount_30d": 40.0,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(target: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`bentoml serve target` on a free loopback port; yields its URL, stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=dict(os.environ, **(env or {})),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, 120, alive=lambda: proc.poll() is None):
            raise RuntimeError(f"{target} never became ready")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential_latency_ms(url: str, body: dict, requests: int) -> dict[str, float]:
    """One client scoring one transaction at a time, through the typed client users would use."""
    from service.client import FraudClient

    with FraudClient(url, deadline_s=10) as client:
        for _ in range(20):
            client.score(body)
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            client.score(body)
            times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": statistics.median(times), "p99_ms": percentile(times, 0.99), "requests": requests}


def concurrent_load(url: str, path: str, body, clients: int, requests: int) -> dict[str, float]:
    """`requests` POSTs from `clients` concurrent connections; bounded by count, stops by itself."""

    async def run() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        remaining = requests

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t = time.perf_counter()
                try:
                    resp = await client.post(path, json=body)
                    if resp.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append((time.perf_counter() - t) * 1000)

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            cpu0, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(clients)))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        return {"rps": len(latencies) / wall, "p50_ms": statistics.median(latencies),
                "p99_ms": percentile(latencies, 0.99), "errors": errors, "client_cpu": cpu / wall}

    return asyncio.run(run())
