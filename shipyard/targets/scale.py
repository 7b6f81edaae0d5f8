"""What the autoscaler did while a suite ran: the workload's replicas over time.

A release manager reading a stress verdict needs to know whether the HorizontalPodAutoscaler
scaled the service out, and how fast: production will rely on it. While a load or stress suite
runs on the Kubernetes target, a read of the Deployment and its HPA every two seconds records the
Deployment's desired and ready replicas and the HPA's own view (its measured CPU utilisation and
the replicas it wants). The verdict gets the figures a gate can bound, the report the chart.
"""

from __future__ import annotations

import threading
import time
from typing import Any

EVERY_S = 2.0


class ScaleWatch:
    """Samples a Deployment and its HPA (same name) in a namespace until stopped."""

    def __init__(self, namespace: str, workload: str) -> None:
        self.namespace, self.workload = namespace, workload
        self.rows: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scale-watch")
        self._started = 0.0

    def __enter__(self) -> "ScaleWatch":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from shipyard import cluster

        while not self._stop.is_set():
            at = round(time.monotonic() - self._started, 1)
            try:
                dep = cluster.get("Deployment", self.workload, self.namespace) or {}
                hpa = cluster.get("HorizontalPodAutoscaler", self.workload, self.namespace) or {}
            except Exception:  # noqa: BLE001 - one missed sample must not fail the suite it watches
                dep, hpa = {}, {}
            if dep:
                cpu = next((m["resource"]["current"].get("averageUtilization")
                            for m in hpa.get("status", {}).get("currentMetrics") or []
                            if m.get("type") == "Resource" and m["resource"].get("name") == "cpu"), None)
                self.rows.append({"t": at, "replicas": dep.get("spec", {}).get("replicas"),
                                  "ready": dep.get("status", {}).get("readyReplicas", 0),
                                  "desired_by_hpa": hpa.get("status", {}).get("desiredReplicas"),
                                  "cpu_pct": cpu})
            self._stop.wait(EVERY_S)

    def metrics(self) -> dict[str, float | None]:
        """replicas at the start, at most, and seconds until more than at the start were ready
        (None when it never scaled out: a gate on it then fails, as no data always does)."""
        if not self.rows:
            return {"replicas_start": None, "replicas_max": None, "scale_out_s": None}
        start = self.rows[0]["ready"] or 0
        out = next((r["t"] for r in self.rows if (r["ready"] or 0) > start), None)
        return {"replicas_start": start, "replicas_max": max(r["ready"] or 0 for r in self.rows), "scale_out_s": out}
