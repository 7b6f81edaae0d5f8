"""Where an environment runs. Everything that differs between targets lives here.

LocalTarget serves the Bento with `bentoml serve` on the 127.0.0.1 port environment.yaml gives,
recording the server's PID and what it serves under the state folder, so any later shipyard
command (status, stop, verify) finds it without a daemon. KubernetesTarget arrives with
`shipyard deploy` on a cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from shipyard.config import Environment
from shipyard.paths import PROJECT_ROOT, state_dir

if TYPE_CHECKING:
    from shipyard.manifests import ImageRef


class TargetError(Exception):
    """The target could not do what was asked; the CLI maps it to exit code 1."""


@dataclass
class LocalState:
    """What a local deployment records: enough to find, check and stop it later."""

    environment: str
    pid: int
    port: int
    bento: str
    model: str
    started_at: str
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Status:
    environment: str
    target: str
    state: str  # local: ready | starting | stopped | dead; kubernetes: ready | absent | n/m ready
    bento: str = ""
    model: str = ""
    url: str = ""
    pid: int | None = None
    started_at: str = ""
    image: str = ""
    # kubernetes: every workload of the release that is not ready, with its reason
    problems: tuple[str, ...] = ()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: the server and every worker it forked."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Polls url/readyz: True once it answers 200, False when `alive()` turns false or time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if http_ready(url, timeout=1.0):
            return True
        time.sleep(0.2)
    return False


class LocalTarget:
    """Runs an environment as a `bentoml serve` process on loopback."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.dir = state_dir() / "local" / env.name
        self.state_file = self.dir / "server.json"
        self._locks: dict[str, int] = {}  # lock name -> the open, flocked file descriptor

    def state(self) -> LocalState | None:
        try:
            return LocalState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def status(self) -> Status:
        st = self.state()
        if st is None:
            return Status(self.env.name, "local", "stopped")
        alive = _pid_alive(st.pid)
        state = "dead" if not alive else ("ready" if http_ready(st.url) else "starting")
        return Status(self.env.name, "local", state, st.bento, st.model, st.url, st.pid, st.started_at)

    def deploy(self, bento: str, model: str, progress: Callable[[str], None] = lambda _: None) -> LocalState:
        """Serves `bento`; a no-op when it already serves it, a replacement when it serves another."""
        current = self.state()
        if current and _pid_alive(current.pid):
            if current.bento == bento and http_ready(current.url):
                progress(f"{self.env.name} already serves {bento} at {current.url}")
                return current
            progress(f"stopping {current.bento} (pid {current.pid})")
            self.stop()
        port = self.env.local.port
        if port_in_use(port):
            raise TargetError(
                f"port {port} on 127.0.0.1 is in use by another process: stop it, or change "
                f"local.port in environments/{self.env.name}/environment.yaml"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / "server.log"
        cmd = [
            sys.executable, "-m", "bentoml", "serve", bento,
            "--host", "127.0.0.1", "--port", str(port),
        ]
        env = dict(os.environ, BENTOML_DO_NOT_TRACK="True", SHIPYARD_WORKERS=str(self.env.local.workers),
                   SHIPYARD_DEADLINE_MS=f"{self.env.deadline_ms:g}", BENTOML_HOME=str(self._bentoml_home()))
        with open(log_path, "ab") as log:
            # A session of its own, so stop() can end bentoml's workers with it.
            proc = subprocess.Popen(
                cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        st = LocalState(
            self.env.name, proc.pid, port, bento, model,
            datetime.now(timezone.utc).isoformat(timespec="seconds"), str(log_path),
        )
        self.state_file.write_text(json.dumps(asdict(st), indent=2))
        progress(f"started bentoml serve {bento} (pid {proc.pid}), waiting for {st.url}/readyz")
        if wait_until_ready(st.url, self.env.local.ready_timeout_s, alive=lambda: proc.poll() is None):
            return st
        if proc.poll() is not None:
            self.state_file.unlink(missing_ok=True)
            raise TargetError(f"the server exited with code {proc.returncode} before it was ready:\n{_tail(log_path)}")
        self.stop()
        raise TargetError(
            f"the server was not ready within {self.env.local.ready_timeout_s:g}s "
            f"(local.ready_timeout_s):\n{_tail(log_path)}"
        )

    def _bentoml_home(self) -> Path:
        """A BentoML home of this environment's own that shares the store's Bentos and models.

        Why: every `bentoml serve` empties <BENTOML_HOME>/prometheus_multiproc_dir when it starts,
        so servers sharing one home (staging and production) would erase each other's metrics."""
        shared = Path(os.environ["BENTOML_HOME"])
        home = self.dir / "bentoml-home"
        home.mkdir(parents=True, exist_ok=True)
        for sub in ("bentos", "models"):
            (shared / sub).mkdir(parents=True, exist_ok=True)
            link = home / sub
            if not link.is_symlink():
                link.symlink_to(shared / sub, target_is_directory=True)
        return home

    # --- what promotion needs: the running subject, rolling to one, records, a lock -----------

    def subject(self) -> str:
        """What runs here (a Bento tag), or "" when nothing does."""
        st = self.status()
        return st.bento if st.state == "ready" else ""

    def roll_to(self, subject: str, progress: Callable[[str], None] = lambda _: None) -> None:
        from shipyard.bento import resolve_bento

        bento = resolve_bento(subject)
        self.deploy(bento.tag, bento.model_tag, progress)

    def record_location(self, kind: str, name: str) -> str:
        return str(state_dir() / "records" / self.env.name / kind / f"{name}.json")

    def put_record(self, kind: str, name: str, doc: dict) -> str:
        """Stores doc (with its own location in `record`) and returns that location."""
        path = Path(self.record_location(kind, name))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**doc, "record": str(path)}, indent=2))
        tmp.replace(path)
        return str(path)

    def get_records(self, kind: str) -> list[dict]:
        folder = state_dir() / "records" / self.env.name / kind
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def acquire_lock(self, name: str, holder: str, ttl_s: float) -> str | None:
        """Takes the lock (None) or names its holder.

        An flock on the lock file: the kernel grants it to one process at a time and drops it
        when the holder exits, however it exits. So there is no expiry to race on (ttl_s is for
        targets whose locks outlive their holders) and nothing is ever deleted: a file-exists
        lock with a timeout let two managers that both saw it expire delete each other's."""
        path = state_dir() / "locks" / f"{self.env.name}-{name}.lock"
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
        self._locks[name] = fd
        return None

    def release_lock(self, name: str, holder: str) -> None:
        fd = self._locks.pop(name, None)
        if fd is None:
            return
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def stop(self, grace_s: float = 15.0) -> bool:
        """SIGTERM to the server's process group, SIGKILL after the grace period. True if it ran."""
        st = self.state()
        if st is None:
            return False
        was_running = bool(_group_members(st.pid))
        if was_running:
            try:
                os.killpg(st.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace_s
            while _group_members(st.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_members(st.pid):
                try:
                    os.killpg(st.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while _group_members(st.pid) and time.monotonic() < deadline + 5:
                    time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return was_running


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def target_for(env: Environment, override: str | None = None) -> "LocalTarget | KubernetesTarget":
    kind = override or env.target
    return LocalTarget(env) if kind == "local" else KubernetesTarget(env)


# --- Kubernetes -------------------------------------------------------------------------------

DEPLOYMENT = "fraud-scorer"
COMPONENT_SELECTOR = "app.kubernetes.io/component=api"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=shipyard"
ANNOTATION_BENTO = "shipyard.dev/bento"
ANNOTATION_MODEL = "shipyard.dev/model"
# Pod states that will not resolve by waiting: report them instead of running into the timeout.
_STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
          "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def _pod_problem(pod: dict) -> str | None:
    """A pod state that will not resolve by waiting, in the kubelet's words, or None."""
    for cs in pod.get("status", {}).get("containerStatuses", []):
        waiting = cs.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            return f"{waiting['reason']}: {waiting.get('message', '')[:300]}".rstrip(": ")
        if cs.get("restartCount", 0) >= 2 and not cs.get("ready"):
            return f"restarted {cs['restartCount']} times"
    return None


@dataclass(frozen=True)
class WorkloadHealth:
    name: str
    ready: bool
    stuck: bool  # waiting will not help (crash loop, image pull failure)
    summary: str


@dataclass(frozen=True)
class KubernetesDeploy:
    environment: str
    namespace: str
    image: str
    changed: bool
    ready: int
    desired: int
    seconds: float
    checks: list[str]


class KubernetesTarget:
    """Runs an environment in its namespace on the cluster of the current kubeconfig context."""

    def __init__(self, env: Environment) -> None:
        if not env.namespace:
            raise TargetError(f"environment {env.name!r} has no namespace in its environment.yaml")
        self.env = env
        self.namespace = env.namespace

    def preflight(self, image: "ImageRef", annotations: dict[str, str], progress: Callable[[str], None]) -> tuple[list[dict], list[str]]:
        """Render, validate, scan and parity-check: everything that happens before the cluster."""
        from shipyard import manifests
        from shipyard.config import load_environment

        checks = []
        objects = manifests.render(self.env.name, image, annotations)
        manifests.validate(objects)
        checks.append(f"schema: {len(objects)} objects valid for Kubernetes {manifests.KUBERNETES_VERSION}")
        progress(checks[-1])
        scan = manifests.scan(objects)
        if scan.failed:
            raise manifests.ManifestError("the scanner failed these checks (fix them, or write each down with its "
                                          "reason in k8s/checkov-exceptions.yaml):\n  " + "\n  ".join(scan.failed))
        checks.append(f"scan: checkov {manifests.CHECKOV_VERSION}, {scan.passed} checks passed, 0 failed, "
                      f"{len(scan.skipped)} written exceptions")
        progress(checks[-1])
        if self.env.parity:
            other = load_environment(self.env.parity.with_)
            diffs = manifests.parity(self.env, other, self.env.parity.allow)
            bad = [d for d in diffs if not d.allowed]
            if bad:
                raise manifests.ManifestError(
                    f"{self.env.name} is no longer a clone of {other.name}; differences outside parity.allow:\n  "
                    + "\n  ".join(f"{d.obj} {d.path}: {d.left!r} vs {d.right!r}" for d in bad)
                    + f"\n(see: shipyard diff {self.env.name} {other.name})")
            checks.append(f"parity with {other.name}: {len(diffs)} differences, all allowed")
            progress(checks[-1])
        return objects, checks

    def deploy(self, image: "ImageRef", annotations: dict[str, str], progress: Callable[[str], None] = lambda _: None,
               dry_run: bool = False, timeout_s: float = 300) -> KubernetesDeploy:
        from shipyard import kubectl, manifests

        started = time.monotonic()
        if manifests.ANNOTATION_BROKER not in annotations:
            raise TargetError(f"no stream broker image is known for {image}: run `shipyard image build` once "
                              "(it builds and records the broker's image, scripts/image/build-redis)")
        objects, checks = self.preflight(image, annotations, progress)
        kubectl.check_reachable()
        rendered = manifests.to_yaml(objects)
        if dry_run and kubectl.get_json("namespace", self.namespace) is None:
            # Nothing to diff against: a server-side dry run needs the namespace to exist.
            progress(f"namespace {self.namespace} does not exist yet; deploying would create:")
            for obj in objects:
                progress(f"  {obj['kind']}/{obj['metadata']['name']}")
            return KubernetesDeploy(self.env.name, self.namespace, str(image), True, 0, 0,
                                    time.monotonic() - started, checks)
        if dry_run:
            diff = kubectl.run("diff", "--server-side", "--field-manager=shipyard", "--force-conflicts", "-f", "-",
                               input_text=rendered, check=False)
            if diff.returncode > 1:
                raise TargetError(f"server-side dry run failed: {diff.stderr.strip()}")
            progress(diff.stdout.strip() or "no changes")
            return KubernetesDeploy(self.env.name, self.namespace, str(image), bool(diff.stdout.strip()), 0, 0,
                                    time.monotonic() - started, checks)
        before = kubectl.get_json("deployment", DEPLOYMENT, "-n", self.namespace)
        progress(f"applying {len(objects)} objects to namespace {self.namespace} (server-side)")
        kubectl.run("apply", "--server-side", "--field-manager=shipyard", "--force-conflicts", "-f", "-",
                    input_text=rendered)
        after = kubectl.get_json("deployment", DEPLOYMENT, "-n", self.namespace)
        changed = before is None or before["metadata"]["generation"] != after["metadata"]["generation"]
        ready, desired = self._wait_for_rollout(str(image), progress, timeout_s)
        self._wait_for_companions(objects, progress, max(30.0, timeout_s - (time.monotonic() - started)))
        return KubernetesDeploy(self.env.name, self.namespace, str(image), changed, ready, desired,
                                time.monotonic() - started, checks)

    def _wait_for_rollout(self, image: str, progress: Callable[[str], None], timeout_s: float) -> tuple[int, int]:
        from shipyard import kubectl

        deadline = time.monotonic() + timeout_s
        last, stuck_since = "", None
        while True:
            dep = kubectl.get_json("deployment", DEPLOYMENT, "-n", self.namespace) or {}
            spec, st = dep.get("spec", {}), dep.get("status", {})
            want = spec.get("replicas", 1)
            updated, available = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
            total = st.get("replicas", 0)
            line = f"rollout: {updated}/{want} updated, {available}/{want} available"
            if line != last:
                progress(line)
                last = line
            if st.get("observedGeneration", 0) >= dep["metadata"]["generation"] and updated == want \
                    and total == want and available == want:
                return available, want
            problem = self._new_pod_problem(image)
            if problem:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 20:
                    raise TargetError(self._failure(image, problem))
            else:
                stuck_since = None
            if time.monotonic() > deadline:
                raise TargetError(self._failure(image, f"not ready within {timeout_s:g}s"))
            time.sleep(1)

    def _wait_for_companions(self, objects: list[dict], progress: Callable[[str], None], timeout_s: float) -> None:
        """The other Deployments of the release (the stream broker and workers) must be ready too.

        A companion whose pods are stuck (crash loop, image pull) fails the deploy after a short
        grace period, naming the workload and the pod's own last words, instead of running into
        the timeout: that is what the release manager needs to read first."""
        names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != DEPLOYMENT]
        deadline = time.monotonic() + timeout_s
        stuck_since: dict[str, float] = {}
        pending = list(names)
        while pending:
            for name in list(pending):
                health = self._workload_health(name)
                if health.ready:
                    progress(f"{name}: ready ({health.summary})")
                    pending.remove(name)
                    stuck_since.pop(name, None)
                elif health.stuck:
                    since = stuck_since.setdefault(name, time.monotonic())
                    if time.monotonic() - since > 20:
                        raise TargetError(f"deployment/{name} in {self.namespace} did not become ready: {health.summary}")
                else:
                    stuck_since.pop(name, None)
            if pending and time.monotonic() > deadline:
                reasons = "; ".join(f"deployment/{n}: {self._workload_health(n).summary}" for n in pending)
                raise TargetError(f"not ready within {timeout_s:g}s in {self.namespace}: {reasons}")
            if pending:
                time.sleep(1)

    def _workload_health(self, name: str, dep: dict | None = None) -> "WorkloadHealth":
        """Is one Deployment of the release ready, and if not, why (from its pods, not a guess)."""
        from shipyard import kubectl

        dep = dep if dep is not None else kubectl.get_json("deployment", name, "-n", self.namespace)
        if dep is None:
            return WorkloadHealth(name, False, False, "absent")
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status", {})
        ready, updated = st.get("readyReplicas", 0), st.get("updatedReplicas", 0)
        current = st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        summary = f"{ready}/{want} ready" + (f", {updated}/{want} updated" if updated < want else "")
        if current and ready == want and updated == want and st.get("replicas", 0) == want:
            return WorkloadHealth(name, True, False, summary)
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"].get("matchLabels", {}).items())
        pods = (kubectl.get_json("pods", "-n", self.namespace, "-l", selector) or {}).get("items", [])
        for pod in pods:
            problem = _pod_problem(pod)
            if problem:
                pod_name = pod["metadata"]["name"]
                last = kubectl.run("logs", pod_name, "-n", self.namespace, "--previous", "--tail=3",
                                   check=False).stdout.strip().splitlines()
                said = f"; its last log line: {last[-1][:300]}" if last else ""
                return WorkloadHealth(name, False, True, f"{summary}, {pod_name}: {problem}{said}")
        for pod in pods:  # running but failing its readiness probe: the probe's own words
            statuses = pod.get("status", {}).get("containerStatuses", [])
            if statuses and all(cs.get("state", {}).get("running") for cs in statuses) \
                    and not all(cs.get("ready") for cs in statuses):
                events = (kubectl.get_json("events", "-n", self.namespace, "--field-selector",
                                           f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy") or {})
                latest = sorted(events.get("items", []), key=lambda e: e.get("lastTimestamp") or "")[-1:]
                if latest:
                    return WorkloadHealth(name, False, False, f"{summary}, {pod['metadata']['name']}: "
                                                              f"{latest[0].get('message', '')[:300]}")
        return WorkloadHealth(name, False, False, summary + ("" if current else ", rollout in progress"))

    def _new_pods(self, image: str) -> list[dict]:
        from shipyard import kubectl

        pods = (kubectl.get_json("pods", "-n", self.namespace, "-l", COMPONENT_SELECTOR) or {}).get("items", [])
        return [p for p in pods if p["spec"]["containers"][0]["image"] == image]

    def _new_pod_problem(self, image: str) -> str | None:
        for pod in self._new_pods(image):
            problem = _pod_problem(pod)
            if problem:
                return f"{pod['metadata']['name']}: {problem}"
        return None

    def _failure(self, image: str, reason: str) -> str:
        from shipyard import kubectl

        lines = [f"rollout of {image} to {self.namespace} failed: {reason}"]
        for pod in self._new_pods(image)[:3]:
            name = pod["metadata"]["name"]
            events = kubectl.get_json("events", "-n", self.namespace, "--field-selector",
                                      f"involvedObject.name={name}") or {}
            for ev in sorted(events.get("items", []), key=lambda e: e.get("lastTimestamp") or "")[-4:]:
                lines.append(f"  {name}: {ev.get('reason')}: {ev.get('message', '')[:200]}")
        lines.append("the previous ReplicaSet keeps serving (maxUnavailable 0); fix the image or the probe and deploy again")
        return "\n".join(lines)

    # --- what promotion needs: the running subject, rolling to one, records, a lock -----------

    def subject(self) -> str:
        """What the API serves here (an image name@sha256:...), or "" when nothing does.

        Whether the rest of the release is healthy is status()'s question, not this one's: a
        rollback must know what production serves even while one of its workers is down."""
        from shipyard import kubectl

        dep = kubectl.get_json("deployment", DEPLOYMENT, "-n", self.namespace)
        if dep is None or dep.get("status", {}).get("readyReplicas", 0) == 0:
            return ""
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    def roll_to(self, subject: str, progress: Callable[[str], None] = lambda _: None) -> None:
        from shipyard.image import resolve_deployable
        from shipyard.manifests import ImageRef

        reference, notes = resolve_deployable(subject)
        self.deploy(ImageRef.parse(reference), notes, progress)

    def record_location(self, kind: str, name: str) -> str:
        return f"configmap/shipyard-{kind}-{name}".lower()[:263] + f" in {self.namespace}"

    def put_record(self, kind: str, name: str, doc: dict) -> str:
        """A ConfigMap in the environment's namespace, so the evidence lives with what it judged."""
        from shipyard import kubectl

        location = self.record_location(kind, name)
        cm = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": location.split("/", 1)[1].split(" ", 1)[0], "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "shipyard", "shipyard.dev/record": kind}},
            "data": {"record.json": json.dumps({**doc, "record": location}, indent=2)},
        }
        kubectl.run("apply", "--server-side", "--field-manager=shipyard", "--force-conflicts", "-f", "-",
                    input_text=json.dumps(cm))
        return location

    def get_records(self, kind: str) -> list[dict]:
        from shipyard import kubectl

        items = (kubectl.get_json("configmaps", "-n", self.namespace, "-l", f"shipyard.dev/record={kind}") or {}).get("items", [])
        return sorted((json.loads(i["data"]["record.json"]) for i in items), key=lambda d: d.get("finished_at", d.get("at", "")))

    def acquire_lock(self, name: str, holder: str, ttl_s: float) -> str | None:
        """A coordination.k8s.io Lease: created by one release manager, refused to the next."""
        from shipyard import kubectl

        lease_name = f"shipyard-{name}"
        now = datetime.now(timezone.utc)
        lease = self._lease(lease_name, holder, ttl_s)
        holder_now = "unknown"
        for _ in range(3):
            created = kubectl.run("create", "-f", "-", input_text=json.dumps(lease), check=False)
            if created.returncode == 0:
                return None
            if "AlreadyExists" not in created.stderr:
                raise TargetError(f"could not take the promotion lock: {created.stderr.strip()}")
            current = kubectl.get_json("lease", lease_name, "-n", self.namespace)
            if current is None:
                continue
            spec = current.get("spec", {})
            holder_now = spec.get("holderIdentity", "unknown")
            renewed = datetime.fromisoformat(spec.get("renewTime", "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
            if (now - renewed).total_seconds() < spec.get("leaseDurationSeconds", 0):
                return holder_now
            if self.take_over_lease(current, holder, ttl_s):
                return None
            # Another manager took the expired lease first: read who, and say so.
        return holder_now

    def _lease(self, name: str, holder: str, ttl_s: float, resource_version: str | None = None) -> dict:
        """A Lease held by `holder` from now; with a resource_version, a write that only succeeds
        over that exact version."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        metadata = {"name": name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": int(ttl_s), "acquireTime": now,
                         "renewTime": now}}

    def take_over_lease(self, seen: dict, holder: str, ttl_s: float) -> bool:
        """Replaces an expired Lease only if it is still the version `seen` (client-go's leader
        election does the same): of two managers that both saw it expire, the API server lets
        exactly one write and answers the other Conflict. Deleting and re-creating it instead let
        both hold it."""
        from shipyard import kubectl

        lease = self._lease(seen["metadata"]["name"], holder, ttl_s, seen["metadata"]["resourceVersion"])
        replaced = kubectl.run("replace", "-f", "-", input_text=json.dumps(lease), check=False)
        if replaced.returncode == 0:
            return True
        if "Conflict" in replaced.stderr or "has been modified" in replaced.stderr or "NotFound" in replaced.stderr:
            return False
        raise TargetError(f"could not take over the expired promotion lock: {replaced.stderr.strip()}")

    def release_lock(self, name: str, holder: str) -> None:
        from shipyard import kubectl

        current = kubectl.get_json("lease", f"shipyard-{name}", "-n", self.namespace)
        if current and current.get("spec", {}).get("holderIdentity") == holder:
            kubectl.run("delete", "lease", f"shipyard-{name}", "-n", self.namespace, check=False)

    def status(self) -> Status:
        """Ready only when every Deployment of the release is; otherwise the state names the
        workloads that are not, so a crash-looping worker cannot hide behind a healthy API."""
        from shipyard import kubectl

        deps = (kubectl.get_json("deployments", "-n", self.namespace, "-l", MANAGED_SELECTOR) or {}).get("items", [])
        dep = next((d for d in deps if d["metadata"]["name"] == DEPLOYMENT), None)
        if dep is None:
            return Status(self.env.name, "kubernetes", "absent")
        health = [self._workload_health(d["metadata"]["name"], d) for d in deps]
        problems = tuple(f"deployment/{h.name}: {h.summary}" for h in health if not h.ready)
        state = "ready" if not problems else "not ready: " + ", ".join(h.name for h in health if not h.ready)
        notes = dep["metadata"].get("annotations", {})
        return Status(self.env.name, "kubernetes", state, notes.get(ANNOTATION_BENTO, ""),
                      notes.get(ANNOTATION_MODEL, ""), "", None,
                      dep["metadata"]["creationTimestamp"].replace("Z", "+00:00"),
                      dep["spec"]["template"]["spec"]["containers"][0]["image"], problems)


# --- batch mode as a Job ----------------------------------------------------------------------

BATCH_CRONJOB = "fraud-batch"
# A ConfigMap holds at most 1 MiB: the CLI's way in is for files up to this size. Larger inputs
# belong on a volume the CronJob mounts (see k8s/base/batch-cronjob.yaml).
BATCH_INPUT_LIMIT = 900 * 1024


@dataclass(frozen=True)
class BatchJobResult:
    job: str
    rows: int
    scored: int
    rejected: int
    seconds: float


def run_batch_job(target: KubernetesTarget, source: Path, output: Path, rejects: Path,
                  progress: Callable[[str], None] = lambda _: None, timeout_s: float = 600) -> BatchJobResult:
    """One Job from the environment's (suspended) CronJob template: the image the environment
    runs, the input in a ConfigMap owned by the Job, the outputs back through the Job's log."""
    import base64

    from service.batch import INPUTS, OUTPUTS, BatchError, unpack_archive
    from shipyard import kubectl

    if not source.is_file():
        raise TargetError(f"input {source} does not exist")
    if source.suffix.lower() not in INPUTS or output.suffix.lower() not in OUTPUTS:
        raise TargetError(f"inputs are {', '.join(INPUTS)} and outputs {', '.join(OUTPUTS)}")
    size = source.stat().st_size
    if size > BATCH_INPUT_LIMIT:
        raise TargetError(f"{source} is {size / 1024:.0f} KiB; a Job started by the CLI takes up to "
                          f"{BATCH_INPUT_LIMIT // 1024} KiB through a ConfigMap. Score it locally (shipyard batch "
                          "without --target kubernetes) or mount your storage in the CronJob's input volume")
    ns = target.namespace
    cron = kubectl.get_json("cronjob", BATCH_CRONJOB, "-n", ns)
    if cron is None:
        raise TargetError(f"no cronjob/{BATCH_CRONJOB} in {ns}: deploy the environment first (shipyard deploy)")
    started = time.monotonic()
    name = f"{BATCH_CRONJOB}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{os.getpid() % 10000}"
    job_spec = cron["spec"]["jobTemplate"]["spec"]
    pod = job_spec["template"]["spec"]
    container = pod["containers"][0]
    out_name = f"scores{output.suffix.lower()}"
    container["args"] = [f"/input/{source.name}", f"/output/{out_name}", "--rejects", "/output/rejects.csv", "--archive"]
    for volume in pod["volumes"]:
        if volume["name"] == "input":
            volume["configMap"] = {"name": name}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": ns, "labels": {**cron["metadata"].get("labels", {}),
                                                                   "shipyard.dev/batch-run": name}},
           "spec": job_spec}
    kubectl.run("create", "-f", "-", input_text=json.dumps(job))
    uid = kubectl.get_json("job", name, "-n", ns)["metadata"]["uid"]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": name, "namespace": ns,
                               "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}]},
                  "binaryData": {source.name: base64.b64encode(source.read_bytes()).decode()}}
    kubectl.run("create", "-f", "-", input_text=json.dumps(config_map))
    progress(f"job/{name} created in {ns} ({size / 1024:.0f} KiB of input)")
    deadline = time.monotonic() + timeout_s
    while True:
        status = (kubectl.get_json("job", name, "-n", ns) or {}).get("status", {})
        if status.get("succeeded"):
            break
        if status.get("failed") or time.monotonic() > deadline:
            log = kubectl.run("logs", f"job/{name}", "-n", ns, check=False).stdout[-2000:]
            why = "failed" if status.get("failed") else f"did not finish within {timeout_s:g}s"
            raise TargetError(f"job/{name} {why}; its log ends:\n{log}")
        time.sleep(1)
    log = kubectl.run("logs", f"job/{name}", "-n", ns, timeout=120).stdout
    summary = next((json.loads(line) for line in log.splitlines() if line.startswith('{"rows"')), None)
    if summary is None:
        raise TargetError(f"job/{name} printed no summary; its log ends:\n{log[-2000:]}")
    try:
        unpack_archive(log, {out_name: output, "rejects.csv": rejects})
    except BatchError as exc:
        raise TargetError(f"job/{name}: {exc}") from exc
    if summary["rows"] != summary["scored"] + summary["rejected"]:
        raise TargetError(f"job/{name} read {summary['rows']} rows but scored {summary['scored']} and rejected "
                          f"{summary['rejected']}")
    return BatchJobResult(name, summary["rows"], summary["scored"], summary["rejected"], time.monotonic() - started)
