"""An open-loop load generator fast enough to overload a server: the stress suite's overload and
`make bench`'s sweeps and overloads use this one generator.

Open loop: request i is due at start + i / rate whatever the answers do, as independent callers
send. Its latency is measured from when it was *due*, not from when a connection was free to carry
it, so a generator that falls behind cannot hide the server's queue (no coordinated omission).

Why written here: the tools built for this (wrk2, vegeta) are not in Debian, and this machine may
build Go only for the cluster's named components. wrk (Debian's) is closed-loop; httperf's rate is
of new connections, and it splits no latency by status; locust and the aiohttp generator this
replaced top out near 2 000 requests/s a core. This one is a uvloop protocol with httptools' C
response parser (both already pinned: uvicorn serves with them), bodies formatted once, and about
10 us of Python per request, so one core offers ~30 000 requests/s. Its own CPU and how late it
sent are reported with every result, so a run that measured the generator says so.

Bounded in count and time. It sends to the URL it is given: `make bench` only loopback (checked),
the stress suite the environment's own server (the local target's loopback port, or the Service
inside the environment's namespace).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import resource
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from shipyard.harness.stress import GENERATOR_BOUND_CPU, Sample, percentile

MAX_CONNECTIONS = 8192  # the default cap on open connections (a backlog forms at the server, not here)
SEND_LAG_BOUND_MS = 5.0  # the generator's own lateness (p99) above which its rate was not the one offered
REFUSALS = (429, 503)  # admission's 503 + Retry-After, BentoML's concurrency limit's 429
KEEP_ALIVE_S = 4.0  # a connection idle this long is closed, not used: servers close idle ones (uvicorn after 5 s)
_TICK_S = 0.001  # uvloop's timers have millisecond resolution: a shorter sleep spins


@dataclass(frozen=True)
class Request:
    """One request as sent: a POST of `body` to `path`."""

    path: str
    body: bytes
    content_type: str = "application/json"


@dataclass
class Phase:
    """`seconds` of requests at `rate` per second, named for the report. With `until`, the phase
    ends early once `until(its samples so far)` is true (checked every 0.25 s): a recovery phase
    lasts until the service has recovered, up to its `seconds`."""

    name: str
    rate: float
    seconds: float
    until: Callable[[list[Any]], bool] | None = None


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)  # (due time, phase, ms from due, status; 0: no answer)
    send_lag_ms: list[float] = field(default_factory=list)  # how late the generator offered each request, against its due time
    queued_for_connection: int = 0  # due while the most connections were busy: waited in the generator (in its latency)
    phase_started: dict[str, float] = field(default_factory=dict)  # perf_counter time each phase began
    phase_seconds: dict[str, float] = field(default_factory=dict)  # how long each phase offered (until may end it early)
    # When the generator had sent each phase's last request, against that request's due time:
    # how far behind its own schedule it ended the phase (seconds).
    phase_behind_s: dict[str, float] = field(default_factory=dict)
    clock_offset: float = 0.0  # wall-clock time minus perf_counter time: sample times as time.time()
    connections: int = 0  # the most open at once
    connect_errors: int = 0
    cpu: float = 0.0
    wall_s: float = 0.0


def _request_bytes(host: str, request: Request, headers: dict[str, str]) -> bytes:
    lines = [f"POST {request.path} HTTP/1.1", f"Host: {host}", f"Content-Type: {request.content_type}",
             f"Content-Length: {len(request.body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + request.body


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; httptools parses the answers."""

    def __init__(self, generator: "_Generator") -> None:
        import httptools

        self.generator = generator
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.in_flight: tuple[float, str] | None = None  # (due, phase)
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        due, phase = self.in_flight  # type: ignore[misc]
        self.in_flight = None
        self.generator.answered(self, due, phase, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)


class _Generator:
    def __init__(self, requests: list[bytes], host: str, port: int, max_connections: int) -> None:
        self.requests = requests
        self.host, self.port, self.max_connections = host, port, max_connections
        self.next_request = 0
        # In turn (first idle, first used), so every open connection carries traffic often enough
        # that the server's keep-alive timeout (uvicorn's: 5 s) does not close it under a request.
        self.idle: collections.deque[_Connection] = collections.deque()
        self.connections: set[_Connection] = set()
        self.opening = 0
        self.waiting: collections.deque[tuple[float, str]] = collections.deque()
        self.outstanding = 0
        self.run = Run()
        self.done = asyncio.get_running_loop().create_future()
        self.sending_finished = False

    def send(self, connection: _Connection, due: float, phase: str) -> None:
        connection.in_flight = (due, phase)
        self.next_request = (self.next_request + 1) % len(self.requests)
        connection.transport.write(self.requests[self.next_request])  # type: ignore[union-attr]

    def offer(self, due: float, phase: str) -> None:
        self.outstanding += 1
        self.run.send_lag_ms.append((time.perf_counter() - due) * 1000)
        while self.idle:
            connection = self.idle.popleft()
            if time.perf_counter() - connection.idle_since < KEEP_ALIVE_S:
                self.send(connection, due, phase)
                return
            connection.transport.close()  # the server may be closing it this very moment
            self.connections.discard(connection)
        # Every connection is busy: as independent callers would, open another (up to the cap)
        # rather than wait, so the backlog forms at the server, where admission control can see it.
        self.waiting.append((due, phase))
        if len(self.connections) + self.opening < self.max_connections:
            self.opening += 1
            asyncio.get_running_loop().create_task(self.open())
        else:
            self.run.queued_for_connection += 1

    async def open(self) -> None:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.run.connect_errors += 1
            return
        finally:
            self.opening -= 1
        self.connections.add(connection)
        self.run.connections = max(self.run.connections, len(self.connections))
        self.ready(connection)

    def ready(self, connection: _Connection) -> None:
        if self.waiting:
            self.send(connection, *self.waiting.popleft())
        else:
            connection.idle_since = time.perf_counter()
            self.idle.append(connection)

    def answered(self, connection: _Connection, due: float, phase: str, status: int) -> None:
        self.run.samples.append((due, phase, (time.perf_counter() - due) * 1000, status))
        self.outstanding -= 1
        self.ready(connection)
        self._maybe_done()

    def lost(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if connection.in_flight is not None:
            due, phase = connection.in_flight
            connection.in_flight = None
            self.run.samples.append((due, phase, (time.perf_counter() - due) * 1000, 0))
            self.outstanding -= 1
            self._maybe_done()
        if connection in self.idle:
            self.idle.remove(connection)

    def _maybe_done(self) -> None:
        if self.outstanding == 0 and self.sending_finished and not self.done.done():
            self.done.set_result(None)

    def finish_sending(self) -> None:
        """Every phase is offered: done once the last answer is in."""
        self.sending_finished = True
        self._maybe_done()


def run(url: str, requests: list[Request], phases: list[Phase], connections: int | None = None,
        max_connections: int = MAX_CONNECTIONS, headers: dict[str, str] | None = None, drain_s: float = 30.0,
        loopback_only: bool = True) -> Run:
    """Offers every phase in turn on keep-alive connections: `connections` opened before the first
    phase (so the run measures requests, not a storm of new connections), more as requests find
    every open one busy (at most `max_connections`). Waits up to `drain_s` for the last answers,
    then counts what is still unanswered as status 0. By default `connections` is what 50 ms of
    the fastest phase needs (64 to 2048): few enough that each carries a request every few seconds.
    `requests` are sent in turn, over and over (their mix is the list's)."""
    if not requests:
        raise ValueError("requests: nothing to send")
    if connections is None:
        connections = max(64, min(2048, int(max(p.rate for p in phases) * 0.05)))
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"url: an http:// address with a host, not {url!r}")
    # Resolved once (a Service's DNS name inside a cluster), not per connection; IPv4 first, as
    # servers bound to 127.0.0.1 are ("localhost" may name ::1 first).
    try:
        found = socket.getaddrinfo(parts.hostname, parts.port or 80, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        found = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    address = found[0][4][0]
    if loopback_only and not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"url: this generator only targets this machine's loopback, not {parts.hostname!r}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < max_connections + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max_connections + 256), hard))
        max_connections = min(max_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64)
    wire = [_request_bytes(parts.netloc, r, headers or {}) for r in requests]

    async def main() -> Run:
        generator = _Generator(wire, address, parts.port or 80, max_connections)
        generator.run.clock_offset = time.time() - time.perf_counter()
        wanted = min(connections, max_connections)
        for first in range(0, wanted, 256):
            batch = min(256, wanted - first)
            generator.opening += batch
            await asyncio.gather(*(generator.open() for _ in range(batch)))
        cpu0, start = time.process_time(), time.perf_counter()
        phase_start = start
        for phase in phases:
            generator.run.phase_started[phase.name] = phase_start
            total = int(phase.rate * phase.seconds)
            sent = 0
            next_check = phase_start + 0.25
            mine: list[Sample] = []  # this phase's answers so far, for `until` (read incrementally)
            cursor = len(generator.run.samples)
            while sent < total:
                now = time.perf_counter()
                due_count = min(total, int((now - phase_start) * phase.rate) + 1)
                while sent < due_count:
                    generator.offer(phase_start + sent / phase.rate, phase.name)
                    sent += 1
                if phase.until is not None and now >= next_check:
                    next_check = now + 0.25
                    samples = generator.run.samples
                    mine.extend(x for x in samples[cursor:] if x[1] == phase.name)
                    cursor = len(samples)
                    if phase.until(mine):
                        break
                await asyncio.sleep(_TICK_S)
            offered_s = sent / phase.rate if phase.rate > 0 else phase.seconds
            generator.run.phase_seconds[phase.name] = offered_s
            generator.run.phase_behind_s[phase.name] = max(0.0, time.perf_counter() - (phase_start + offered_s))
            phase_start += offered_s
        generator.finish_sending()
        try:
            await asyncio.wait_for(asyncio.shield(generator.done), drain_s)
        except asyncio.TimeoutError:
            pass
        generator.run.wall_s = time.perf_counter() - start
        generator.run.cpu = (time.process_time() - cpu0) / generator.run.wall_s
        now = time.perf_counter()
        for protocol in list(generator.connections):
            if protocol.in_flight is not None:
                due, phase = protocol.in_flight
                generator.run.samples.append((due, phase, (now - due) * 1000, 0))
            protocol.transport.close()  # type: ignore[union-attr]
        for due, phase in generator.waiting:
            generator.run.samples.append((due, phase, (now - due) * 1000, 0))
        return generator.run

    import uvloop

    return uvloop.run(main())


def phase_summary(result: Run, phase: Phase) -> dict[str, Any]:
    """What one phase's requests got: answers and refusals apart, as a caller sees them."""
    mine = [s for s in result.samples if s[1] == phase.name]
    answered = [ms for _, _, ms, status in mine if status == 200]
    refused = [ms for _, _, ms, status in mine if status in REFUSALS]
    return {
        "offered_rps": phase.rate,
        "seconds": phase.seconds,
        "requests": len(mine),
        "answered_rps": round(len(answered) / phase.seconds, 1),
        "answered_p50_ms": _round(percentile(answered, 0.50)),
        "answered_p99_ms": _round(percentile(answered, 0.99)),
        "refused": len(refused),
        "refused_p99_ms": _round(percentile(refused, 0.99)),
        "other_status": sum(1 for *_, status in mine if status != 200 and status not in REFUSALS and status != 0),
        "unanswered": sum(1 for *_, status in mine if status == 0),
    }


def generator_summary(result: Run, lag_bound_ms: float = SEND_LAG_BOUND_MS) -> dict[str, Any]:
    """What the generator cost and how late it sent: at `lag_bound_ms` (p99) or a core's worth of
    CPU it was not offering the rate asked of it, and the run measured the generator."""
    lag_p99 = percentile(result.send_lag_ms, 0.99) or 0.0
    return {
        "generator": "shipyard/harness/open_loop.py (uvloop + httptools, one process)",
        "connections": result.connections,
        "connect_errors": result.connect_errors,
        "client_cpu": round(result.cpu, 2),
        "send_lag_p99_ms": round(lag_p99, 2),
        "queued_for_connection": result.queued_for_connection,
        "client_bound": result.cpu >= GENERATOR_BOUND_CPU or lag_p99 > lag_bound_ms,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def sweep_point(url: str, requests: list[Request], rate: float, seconds: float) -> dict[str, Any]:
    """One rate of an offered-load sweep: what the answers and refusals got, and the generator's cost."""
    phase = Phase("sweep", rate, seconds)
    result = run(url, requests, [phase])
    return {**phase_summary(result, phase), **generator_summary(result)}


def overload(url: str, requests: list[Request], saturation_rps: float, times: float = 3.0,
             quick: bool = False, normal_p95_ms: float = 10.0) -> dict[str, Any]:
    """`times` x the measured saturation, open loop, between two spells of normal load (0.3 x):
    what answers and refusals got during the overload, and how soon after it the service was back
    to normal (the stress suite's rule: a 2 s window all answered with p95 <= normal_p95_ms)."""
    from shipyard.harness.stress import recovery_seconds

    phases = [Phase("before", 0.3 * saturation_rps, 2 if quick else 3),
              Phase("overload", times * saturation_rps, 5 if quick else 10),
              Phase("after", 0.3 * saturation_rps, 6 if quick else 10)]
    result = run(url, requests, phases)
    recovery = recovery_seconds([s for s in result.samples if s[1] == "after"], result.phase_started["after"],
                                normal_p95_ms)
    return {"saturation_rps": saturation_rps, "times": times, "normal_p95_ms": normal_p95_ms,
            **{p.name: phase_summary(result, p) for p in phases}, "recovery_s": recovery,
            **generator_summary(result)}
