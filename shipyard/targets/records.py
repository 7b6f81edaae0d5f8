"""Records and locks, kept with the environment they are about: files and a kernel lock under the
state folder for the local target; ConfigMaps in the namespace on Kubernetes (and a Lease:
shipyard/targets/lease.py), so two release managers on two machines see the same history and the
same lock."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Callable


class FileRecords:
    """One JSON file per record: <folder>/<kind>/<name>.json, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def location(self, kind: str, name: str) -> str:
        return str(self.folder / kind / f"{name}.json")

    def put(self, kind: str, name: str, doc: dict) -> str:
        """Stores doc (with its own location in `record`) and returns that location."""
        path = Path(self.location(kind, name))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**doc, "record": str(path)}, indent=2))
        tmp.replace(path)
        return str(path)

    def list(self, kind: str) -> list[dict]:
        folder = self.folder / kind
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


class FileLock:
    """An flock on a file per lock: the kernel grants it to one process at a time and drops it
    when the holder exits, however it exits. So there is no expiry to race on (ttl_s is for locks
    that outlive their holders) and nothing is ever deleted: a file-exists lock with a timeout let
    two managers that both saw it expire delete each other's."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder, self.prefix = folder, prefix
        self._held: dict[str, int] = {}  # lock name -> the open, flocked file descriptor

    def acquire(self, name: str, holder: str, ttl_s: float,
                on_lost: Callable[[str], None] = lambda _: None) -> str | None:
        """Takes the lock (None) or names its holder. A kernel lock is never lost while its holder
        lives, so on_lost is never called."""
        path = self.folder / f"{self.prefix}-{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                return json.loads(path.read_text()).get("holder") or "another process"
            except (OSError, ValueError):  # the holder is writing its name this very moment
                return "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"holder": holder, "since": time.time()}).encode(), 0)
        self._held[name] = fd
        return None

    def release(self, name: str, holder: str) -> None:
        fd = self._held.pop(name, None)
        if fd is None:
            return
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class ConfigMapRecords:
    """A ConfigMap per record in the environment's namespace, so the evidence lives with what it judged."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def location(self, kind: str, name: str) -> str:
        return f"configmap/shipyard-{kind}-{name}".lower()[:263] + f" in {self.namespace}"

    def put(self, kind: str, name: str, doc: dict) -> str:
        from shipyard import cluster

        location = self.location(kind, name)
        cm = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": location.split("/", 1)[1].split(" ", 1)[0], "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "shipyard", "shipyard.dev/record": kind}},
            "data": {"record.json": json.dumps({**doc, "record": location}, indent=2)},
        }
        cluster.apply([cm])
        return location

    def list(self, kind: str) -> list[dict]:
        from shipyard import cluster

        found = cluster.call(f"the {kind} records in namespace {self.namespace}", cluster.core().list_namespaced_config_map,
                             self.namespace, label_selector=f"shipyard.dev/record={kind}")
        return sorted((json.loads((i.data or {})["record.json"]) for i in found.items if "record.json" in (i.data or {})),
                      key=lambda d: d.get("finished_at", d.get("at", "")))
