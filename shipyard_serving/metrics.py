"""BentoML's own request metrics, kept by shipyard's server: the same names, labels and buckets,
so dashboards and alerts that read a `bentoml serve` pod read this one unchanged."""

from __future__ import annotations

import bisect
import collections
import time
from typing import Any, Callable

from .asgi import Message, Receive, Scope, Send


class RequestMetrics:
    """BentoML's request metrics under BentoML's names and labels; children cached per label set
    (prometheus_client's `.labels()` costs a dict build and a lock per call)."""

    def __init__(self, service: Any) -> None:
        import prometheus_client

        from .compat import bentoml_container

        BentoMLContainer = bentoml_container()

        labels = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
        self.total = prometheus_client.Counter(
            name="bentoml_service_request_total", documentation="Total number of runner RPC", labelnames=labels)
        self.duration = prometheus_client.Histogram(
            name="bentoml_service_request_duration_seconds", documentation="runner RPC duration in seconds",
            labelnames=labels, buckets=BentoMLContainer.duration_buckets.get())
        self.in_progress = prometheus_client.Gauge(
            name="bentoml_service_request_in_progress", documentation="Total number of runner RPC in progress now",
            labelnames=labels[:3] + ["runner_name"])
        bento = service.bento
        self.service_name = bento.tag.name if bento is not None else service.name
        self.service_version = (bento.tag.version or "not available") if bento is not None else "not available"
        self.runner_name = service.name
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._gauges: dict[str, Any] = {}

    def gauge(self, endpoint: str) -> Any:
        child = self._gauges.get(endpoint)
        if child is None:
            child = self._gauges[endpoint] = self.in_progress.labels(
                endpoint=endpoint, service_name=self.service_name, service_version=self.service_version,
                runner_name=self.runner_name)
        return child

    def _pair(self, endpoint: str, status: int) -> tuple[Any, Any]:
        children = self._children.get((endpoint, status))
        if children is None:
            labels = dict(endpoint=endpoint, service_name=self.service_name, service_version=self.service_version,
                          http_response_code=str(status), runner_name=self.runner_name)
            children = self._children[(endpoint, status)] = (self.total.labels(**labels), self.duration.labels(**labels))
        return children

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        total, duration = self._pair(endpoint, status)
        total.inc()
        duration.observe(seconds)

    def observe_many(self, endpoint: str, status: int, seconds: list[float]) -> None:
        """Many requests at once: one count and one sum update, and one per bucket they fell in
        (prometheus_client observes one value at a time, under a lock each; refusals at the door
        come by tens of thousands a second)."""
        total, duration = self._pair(endpoint, status)
        total.inc(len(seconds))
        duration._sum.inc(sum(seconds))  # noqa: SLF001 - the histogram child's own parts, as observe() updates them
        bounds = duration._upper_bounds  # noqa: SLF001
        per_bucket = collections.Counter(bisect.bisect_left(bounds, s) for s in seconds)
        for index, n in per_bucket.items():
            duration._buckets[index].inc(n)  # noqa: SLF001


class MetricsMiddleware:
    """Counts and times every request but /metrics (BentoML's RunnerTrafficMetricsMiddleware's rule).

    Unlike BentoML, a path the service does not serve is counted as `other`: every scanner's
    probe would otherwise add three metric series that live as long as the process."""

    def __init__(self, app: Callable, metrics: RequestMetrics, known_paths: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.known_paths else "other"
        started = time.perf_counter()
        status = 0
        gauge = self.metrics.gauge(endpoint)
        gauge.inc()

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe(endpoint, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            gauge.dec()
