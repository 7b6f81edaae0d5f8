"""A client that follows a Service's EndpointSlices, as kube-proxy would, through port-forwards.

Tests may reach pods only through 127.0.0.1, and `kubectl port-forward service/x` pins one pod
for its lifetime, so it cannot show what a rolling update does to a Service's clients. This
client keeps one port-forward per ready endpoint, sends each request to a ready one (round
robin), and stops using an endpoint as soon as the EndpointSlice drops it - exactly the contract
the manifests must honour (readiness gating, preStop drain, maxUnavailable 0).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.conftest import free_port
from tests.integration.conftest import KUBECONFIG, KUBECTL


@dataclass
class _Forward:
    pod: str
    port: int
    proc: subprocess.Popen
    ready: bool = False


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    pods_used: set[str] = field(default_factory=set)


class EndpointFollowingClient:
    def __init__(self, namespace: str, service: str = "fraud-scorer", target_port: int = 3000) -> None:
        self.namespace, self.service, self.target_port = namespace, service, target_port
        self.forwards: dict[str, _Forward] = {}
        self.ready: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "EndpointFollowingClient":
        self._refresh()
        self.watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.watcher.join(timeout=10)
        for fwd in self.forwards.values():
            fwd.proc.terminate()
            fwd.proc.wait(timeout=10)

    def _kubectl(self, *args: str) -> str:
        return subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", self.namespace, *args],
                              capture_output=True, text=True, timeout=30).stdout

    def _refresh(self) -> None:
        slices = json.loads(self._kubectl("get", "endpointslices", "-l",
                                          f"kubernetes.io/service-name={self.service}", "-o", "json") or "{}")
        ready = {ep["targetRef"]["name"] for s in slices.get("items", []) for ep in s.get("endpoints") or []
                 if ep.get("conditions", {}).get("ready") and ep.get("targetRef")}
        for pod in ready - set(self.forwards):
            port = free_port()
            proc = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", self.namespace,
                                     "port-forward", f"pod/{pod}", f"{port}:{self.target_port}",
                                     "--address", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fwd = _Forward(pod, port, proc)
            self.forwards[pod] = fwd
            threading.Thread(target=self._await_forward, args=(fwd,), daemon=True).start()
        with self.lock:
            self.ready = ready

    def _await_forward(self, fwd: _Forward) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                if httpx.get(f"http://127.0.0.1:{fwd.port}/livez", timeout=1).status_code == 200:
                    fwd.ready = True
                    return
            except httpx.TransportError:
                time.sleep(0.1)

    def _watch(self) -> None:
        while not self.stop.wait(0.3):
            self._refresh()

    def _usable(self) -> list[_Forward]:
        with self.lock:
            return [f for p, f in self.forwards.items() if p in self.ready and f.ready]

    def hammer(self, body: dict, until: threading.Event, max_seconds: float = 300, max_requests: int = 100_000) -> Tally:
        """POSTs /score until `until` is set (bounded by time and count); counts every failure."""
        tally = Tally()
        cycle = itertools.count()
        deadline = time.monotonic() + max_seconds
        with httpx.Client(timeout=10) as client:
            while not until.is_set() and time.monotonic() < deadline and tally.sent < max_requests:
                usable = self._usable()
                if not usable:
                    time.sleep(0.05)
                    continue
                fwd = usable[next(cycle) % len(usable)]
                tally.sent += 1
                tally.pods_used.add(fwd.pod)
                try:
                    resp = client.post(f"http://127.0.0.1:{fwd.port}/score", json=body)
                    if resp.status_code != 200:
                        tally.failed += 1
                        tally.failures.append(f"{fwd.pod}: HTTP {resp.status_code}")
                except httpx.HTTPError as exc:
                    tally.failed += 1
                    tally.failures.append(f"{fwd.pod}: {exc.__class__.__name__}")
        return tally
