"""The promotion Lease on the real cluster: held past its duration by renewals while a promotion
runs, refused to a second manager the whole time, and given up by a manager whose renewals the
API server refuses, before anyone else could take it (marker `cluster`).

The holders are separate processes running shipyard's own `_locked` (what promote and rollback
run under), with short leases (SHIPYARD_LEASE_S). The refused renewals are real: the holder runs
as a ServiceAccount whose RoleBinding the test deletes, so the API server answers 403.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import KUBECONFIG, kubectl

pytestmark = pytest.mark.cluster
NS = "shipyard-lease-test"
LEASE = "shipyard-promotion"

# A manager: takes the lock as promote does, says so, then works inside a blocking call for up to
# `hold` seconds; exit 3 with the reason if the lock is lost meanwhile.
HOLDER = """
import subprocess, sys
from shipyard.release import PromotionLockLost, _locked
from shipyard.targets.lease import LeaseLock

class Target:
    lock = LeaseLock(sys.argv[1])

try:
    with _locked(Target, "lease-test"):
        print("held", flush=True)
        subprocess.run(["sleep", sys.argv[2]])
except PromotionLockLost as exc:
    print(f"lost: {exc}", flush=True)
    sys.exit(3)
print("released", flush=True)
"""


@pytest.fixture(scope="module")
def namespace():
    kubectl("create", "namespace", NS, check=False)
    yield NS
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _holder(kubeconfig: Path, lease_s: int, hold_s: int) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), SHIPYARD_LEASE_S=str(lease_s), PYTHONPATH=str(PROJECT_ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, NS, str(hold_s)], env=env, cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    assert line.strip() == "held", line + holder.stderr.read()
    return holder


def _lease() -> dict | None:
    result = kubectl("-n", NS, "get", "lease", LEASE, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _contend(monkeypatch) -> str | None:
    """A second manager (the admin) asks for the lock once: None if it got it (and gave it back)."""
    from shipyard.targets.lease import LeaseLock

    monkeypatch.setenv("KUBECONFIG", str(KUBECONFIG))
    lock = LeaseLock(NS)
    held_by = lock.acquire("promotion", "second-manager", 10)
    if held_by is None:
        lock.release("promotion", "second-manager")
    return held_by


def test_a_promotion_outliving_its_lease_keeps_the_lock_and_a_second_manager_is_refused_throughout(
        namespace, monkeypatch):
    lease_s, hold_s = 10, 32  # held for three leases and more: only renewals keep it
    holder = _holder(KUBECONFIG, lease_s, hold_s)
    try:
        refusals, renewals = [], set()
        started = time.monotonic()
        while holder.poll() is None and time.monotonic() - started < hold_s - 3 and len(refusals) < 40:
            refusals.append(_contend(monkeypatch))
            renewals.add((_lease() or {}).get("spec", {}).get("renewTime"))
            time.sleep(1.5)
        assert holder.poll() is None, holder.stderr.read()
        assert len(refusals) >= 10 and all(r and r.endswith(str(holder.pid)) for r in refusals), refusals
        assert len(renewals - {None}) >= 3, renewals  # renewed again and again past its first duration
        out, err = holder.communicate(timeout=hold_s + 60)
        assert holder.returncode == 0 and "released" in out, out + err
    finally:
        if holder.poll() is None:
            holder.kill()
    assert _lease() is None  # released on exit
    assert _contend(monkeypatch) is None


def _service_account_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig for ServiceAccount lease-manager in NS: the admin's server and CA, its own token."""
    kubectl("-n", NS, "create", "serviceaccount", "lease-manager", check=False)
    kubectl("-n", NS, "create", "role", "lease-manager", "--verb=get,create,update,delete",
            "--resource=leases.coordination.k8s.io", check=False)
    kubectl("-n", NS, "create", "rolebinding", "lease-manager", "--role=lease-manager",
            f"--serviceaccount={NS}:lease-manager", check=False)
    token = kubectl("-n", NS, "create", "token", "lease-manager", "--duration=10m").stdout.strip()
    admin = yaml.safe_load(KUBECONFIG.read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:  # inline it: the file is read relative to the admin's kubeconfig
        cluster = {"server": cluster["server"], "certificate-authority-data": base64.b64encode(
            (KUBECONFIG.parent / cluster["certificate-authority"]).read_bytes()).decode()}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
              "clusters": [{"name": "local", "cluster": cluster}],
              "users": [{"name": "lease-manager", "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "lease-manager", "namespace": NS}}]}
    path = tmp_path / "lease-manager.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_manager_whose_renewals_are_refused_stops_before_its_lease_runs_out(namespace, tmp_path, monkeypatch):
    lease_s = 30  # renewed every 10 s; given up 20 s after the last renewal, 10 s before it runs out
    holder = _holder(_service_account_kubeconfig(tmp_path), lease_s, 300)
    try:
        kubectl("-n", NS, "delete", "rolebinding", "lease-manager")  # from now on: 403 on every renewal
        out, err = holder.communicate(timeout=lease_s + 60)  # catches a hang only
        stopped = datetime.now(timezone.utc)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 3, out + err
    assert "the promotion lock on lease-test was lost: no renewal succeeded" in out and "forbidden" in out, out
    lease = _lease()
    assert lease is not None and lease["spec"]["holderIdentity"].endswith(str(holder.pid))
    renewed = datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))
    assert (stopped - renewed).total_seconds() < lease_s, "the holder kept working after its lease ran out"
    assert _contend(monkeypatch) is not None  # still refused to others until it expires
    kubectl("-n", NS, "delete", "lease", LEASE)
