"""The promotion lock on Kubernetes: a coordination.k8s.io Lease held the way client-go's leader
election holds one, so two release managers never both hold it, however long a promotion runs.

- Acquire: create the Lease; if it exists and its holder renewed it within its duration, refuse
  and name the holder; if it expired, replace it only over the exact version read (the API server
  lets one of two managers that both saw it expire write, and answers the other 409).
- Renew: a background thread rewrites renewTime every `duration/3`, each write over the version of
  our own last one. A write refused for a while (403, the API server unreachable) is retried
  every few seconds; once no renewal has succeeded for `2/3 duration` (the renew deadline), or the
  Lease names someone else, the lock is lost: `on_lost` is called (the promotion stops) a third of
  the duration before anyone else may take it over.
- Release: delete the Lease, only if it is still ours and still the version we wrote.

The kubernetes client's own `leaderelection` package is not used: it blocks until it leads (a
promotion must be refused at once, naming the holder), has no release, and judges expiry by how
long *it* has watched a record, so a new CLI process would always find a crashed manager's Lease
fresh.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from shipyard import cluster
from shipyard.cluster import CONFLICT, ApiError
from shipyard.cluster import ClusterError
from shipyard.targets.base import TargetError

DEFAULT_DURATION_S = 60
RETRY_S = 2.0


def lease_duration_s() -> int:
    """SHIPYARD_LEASE_S (10..3600), else 60 s: how long a crashed manager's lock outlives it."""
    raw = os.environ.get("SHIPYARD_LEASE_S", "")
    if not raw:
        return DEFAULT_DURATION_S
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 10 <= value <= 3600:
        raise TargetError(f"SHIPYARD_LEASE_S={raw!r}: must be a whole number of seconds from 10 to 3600")
    return value


@dataclass(frozen=True)
class Timing:
    """When to renew and when to give up, from the Lease's duration (client-go's ratios: 15 s
    lease, 10 s renew deadline)."""

    duration_s: float

    @property
    def renew_every_s(self) -> float:
        return self.duration_s / 3

    @property
    def renew_deadline_s(self) -> float:
        return self.duration_s * 2 / 3


def renewal_verdict(timing: Timing, since_last_renewal_s: float, holder_now: str | None, holder: str) -> str:
    """"" while the lock is still ours, else why it is lost. holder_now: who the Lease names
    (None when it could not be read)."""
    if holder_now is not None and holder_now != holder:
        return f"the Lease now names {holder_now or 'no holder'}"
    if since_last_renewal_s >= timing.renew_deadline_s:
        return (f"no renewal succeeded for {since_last_renewal_s:.0f} s (the renew deadline is "
                f"{timing.renew_deadline_s:.0f} s of a {timing.duration_s:.0f} s lease)")
    return ""


def expired(spec: Any, now: datetime) -> bool:
    """A Lease nobody renewed within its duration (or that names no holder) may be taken over."""
    if not spec or not spec.holder_identity:
        return True
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return True
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=timezone.utc)
    return (now - renewed).total_seconds() >= (spec.lease_duration_seconds or 0)


class _Held:
    """One held Lease and the thread that keeps it."""

    def __init__(self, lock: "LeaseLock", name: str, holder: str, lease: Any, timing: Timing,
                 on_lost: Callable[[str], None]) -> None:
        self.lock, self.name, self.holder, self.lease, self.timing = lock, name, holder, lease, timing
        self.on_lost = on_lost
        self.lost = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._keep, name=f"lease-{name}", daemon=True)
        self.thread.start()

    def _keep(self) -> None:
        last = time.monotonic()
        wait = self.timing.renew_every_s
        while not self.stopped.wait(wait):
            holder_now: str | None = self.holder
            try:
                self.lease = self.lock.renew(self.lease)
                last, wait = time.monotonic(), self.timing.renew_every_s
                continue
            except ApiError as exc:
                if exc.status == CONFLICT:  # changed under us: read who holds it now
                    try:
                        current = self.lock.read(self.name)
                        holder_now = current.spec.holder_identity if current and current.spec else ""
                        if holder_now == self.holder:  # our own write landed but its answer was lost
                            self.lease = current
                            continue
                    except ClusterError:
                        holder_now = None
                problem = str(exc)
            except ClusterError as exc:
                problem = str(exc)
            wait = RETRY_S
            reason = renewal_verdict(self.timing, time.monotonic() - last, holder_now, self.holder)
            if reason:
                self.lost = f"{reason}; last error: {problem}"
                self.on_lost(self.lost)
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=RETRY_S + 35)  # one call's own bound (shipyard.cluster.REQUEST_TIMEOUT)


class LeaseLock:
    """A coordination.k8s.io Lease per lock in the environment's namespace."""

    def __init__(self, namespace: str, make_namespace: Callable[[], None] = lambda: None) -> None:
        self.namespace = namespace
        self.make_namespace = make_namespace  # the first promotion into an environment finds no namespace yet
        self._held: dict[str, _Held] = {}

    def _what(self, name: str) -> str:
        return f"lease {name} in namespace {self.namespace}"

    def read(self, name: str) -> Any:
        """The Lease, or None when there is none."""
        try:
            return cluster.call(self._what(name), cluster.coordination().read_namespaced_lease, name, self.namespace)
        except cluster.ApiError as exc:
            if exc.status == cluster.NOT_FOUND:
                return None
            raise

    def _body(self, name: str, holder: str, duration_s: int, resource_version: str | None = None) -> Any:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

        now = datetime.now(timezone.utc)
        return V1Lease(metadata=V1ObjectMeta(name=name, namespace=self.namespace, resource_version=resource_version,
                                             labels={"app.kubernetes.io/managed-by": "shipyard"}),
                       spec=V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration_s,
                                        acquire_time=now, renew_time=now))

    def acquire(self, name: str, holder: str, ttl_s: float,
                on_lost: Callable[[str], None] = lambda _: None) -> str | None:
        """Takes the lock (None) and keeps renewing it until release, or names its holder.
        ttl_s: the Lease's duration; on_lost(reason) runs (on the renewing thread) if it is lost."""
        lease_name = f"shipyard-{name}"
        duration = int(ttl_s)
        api = cluster.coordination()
        holder_now = "unknown"
        for _ in range(3):
            try:
                lease = cluster.call(self._what(lease_name), api.create_namespaced_lease, self.namespace,
                                     self._body(lease_name, holder, duration))
            except cluster.ApiError as exc:
                if exc.status == cluster.NOT_FOUND:  # the namespace itself: the first promotion makes it
                    self.make_namespace()
                    continue
                if exc.status != cluster.CONFLICT:
                    raise TargetError(f"could not take the promotion lock: {exc}") from None
                current = self.read(lease_name)
                if current is None:  # released between our create and our read
                    continue
                holder_now = current.spec.holder_identity if current.spec else ""
                if not expired(current.spec, datetime.now(timezone.utc)):
                    return holder_now or "unknown"
                lease = self._take_over(current, holder, duration)
                if lease is None:  # another manager took the expired lease first: read who, and say so
                    continue
            self._held[name] = _Held(self, lease_name, holder, lease, Timing(duration), on_lost)
            return None
        return holder_now

    def _take_over(self, seen: Any, holder: str, duration_s: int) -> Any:
        """Replaces an expired Lease only if it is still the version `seen` (client-go does the
        same): of two managers that both saw it expire, exactly one writes. None if we lost."""
        body = self._body(seen.metadata.name, holder, duration_s, seen.metadata.resource_version)
        try:
            return cluster.call(self._what(seen.metadata.name), cluster.coordination().replace_namespaced_lease,
                                seen.metadata.name, self.namespace, body)
        except cluster.ApiError as exc:
            if exc.status in (cluster.CONFLICT, cluster.NOT_FOUND):
                return None
            raise TargetError(f"could not take over the expired promotion lock: {exc}") from None

    def renew(self, lease: Any) -> Any:
        """The Lease with renewTime now, written over the version we last wrote (ApiError 409 if
        anyone else wrote since)."""
        lease.spec.renew_time = datetime.now(timezone.utc)
        return cluster.call(self._what(lease.metadata.name), cluster.coordination().replace_namespaced_lease,
                            lease.metadata.name, self.namespace, lease)

    def release(self, name: str, holder: str) -> None:
        """Stops renewing and deletes the Lease if it is still ours (and still the version we wrote)."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        held = self._held.pop(name, None)
        if held is None:
            return
        held.stop()
        if held.lost:
            return
        lease = held.lease
        try:
            cluster.call(self._what(lease.metadata.name), cluster.coordination().delete_namespaced_lease,
                         lease.metadata.name, self.namespace,
                         body=V1DeleteOptions(preconditions=V1Preconditions(
                             resource_version=lease.metadata.resource_version, uid=lease.metadata.uid)))
        except cluster.ApiError as exc:
            if exc.status not in (cluster.NOT_FOUND, cluster.CONFLICT):
                raise
