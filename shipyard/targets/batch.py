"""`shipyard batch --target kubernetes`: a sharded, resumable Indexed Job on a volume.

The toolkit owns the orchestration; the work of one shard is the project's batch entry point (the
command of the environment's batch CronJob container, shipyard.yaml `kubernetes.batch_cronjob`).
A run, start to end:

1. the input is split here into shards (shipyard.shards) and copied, with a manifest, onto the
   PersistentVolumeClaim the CronJob mounts, under `<mount>/shipyard-runs/<run>/in`, through a
   short-lived pod of the same image (`kubectl exec ... tar`: works on any cluster, any storage);
2. an Indexed Job built from the CronJob's template runs one pod per shard, at most `parallelism`
   at once, each retried up to `retries_per_shard` times on its own (backoffLimitPerIndex);
3. when every shard has succeeded, their outputs come back, the counts are checked (each shard
   against the rows it was given, the files against the shards' summaries) and only then are the
   merged output and rejects renamed into place; the run's folder on the volume is removed.

A run is named by the input's content, the shard count and the output format, so `--resume` finds
the folder an interrupted run left behind and re-runs only the shards without a summary.

The shard protocol, which a project's entry point implements (service/batch.py does):
`<entry point> INPUT OUTPUT --rejects REJECTS.csv --first-row K --summary SUMMARY.json`: score
INPUT, numbering its rows from K; write OUTPUT and REJECTS (CSV with a header row); print progress
to stderr as JSON lines `{"rows": n, "scored": n, "rejected": n}`; and last, once the outputs are in
place, write that same object to SUMMARY. A shard without a summary did not finish.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from shipyard import cluster, kubectl
from shipyard.shards import Shard, ShardError, check_formats, merge, read_manifest, split, write_manifest
from shipyard.targets.base import TargetError
from shipyard.targets.kubernetes import KubernetesTarget

RUNS_FOLDER = "shipyard-runs"
COPY_TIMEOUT_S = 1800  # each way, for the files of one run
RUN_LABEL = "shipyard.dev/batch-run"
PROGRESS_EVERY_S = 2  # the shards' progress lines, read from their logs while the Job runs
# Each shard's pod: skip a shard already complete (a resumed run), else the entry point with the
# shard protocol's arguments. $JOB_COMPLETION_INDEX is set by the Job controller.
# The shell stays PID 1 and forwards SIGTERM to the entry point instead of exec-ing it: the kernel
# drops a signal to PID 1 that has no handler, so a pod deleted while Python was still importing
# ran its shard to the end (and was not retried). The trap is set before any work starts; a
# signal before the entry point starts ends the shard with 143.
SHARD_SCRIPT = """child=""; stop=0
trap 'stop=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM INT
set -eu
i="$JOB_COMPLETION_INDEX"; d="$SHIPYARD_BATCH_RUN"
if [ -f "$d/out/$i.json" ]; then echo "shard $i is complete: skipped" >&2; exit 0; fi
first_row="$(cat "$d/in/$i.first-row")"
[ "$stop" = 0 ] || exit 143
"$@" "$d/in/$i$SHIPYARD_BATCH_IN" "$d/out/$i$SHIPYARD_BATCH_OUT" --rejects "$d/out/$i.rejects.csv" \\
  --first-row "$first_row" --summary "$d/out/$i.json" &
child=$!
[ "$stop" = 0 ] || kill -TERM "$child" 2>/dev/null || true
while :; do
  status=0; wait "$child" || status=$?
  kill -0 "$child" 2>/dev/null || exit "$status"
done
"""


@dataclass(frozen=True)
class BatchJobResult:
    job: str
    shards: int
    rows: int
    scored: int
    rejected: int
    seconds: float
    retried: int


@dataclass(frozen=True)
class _Template:
    """What the CronJob's template says about where and how shards run."""

    name: str  # the CronJob's, which names the run's Job and files pod
    job_spec: dict
    labels: dict
    mount: str  # where the data volume (a PersistentVolumeClaim) is mounted in the container


def run_id(source: Path, shards: int, output: Path) -> str:
    """The same input, shard count and output format name the same run: what --resume finds."""
    digest = hashlib.sha256()
    with source.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return f"{digest.hexdigest()[:16]}-{shards}-{output.suffix.lower().lstrip('.')}"


def _template(namespace: str, name: str | None) -> _Template:
    if not name:
        raise TargetError("this project names no batch CronJob: set kubernetes.batch_cronjob in shipyard.yaml")
    cron = cluster.get("CronJob", name, namespace)
    if cron is None:
        raise TargetError(f"no cronjob/{name} in {namespace}: deploy the environment first (shipyard deploy)")
    spec = cron["spec"]["jobTemplate"]["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    if not container.get("command"):
        raise TargetError(f"cronjob/{name}: its container names no command; set it to the project's batch entry point")
    claims = {v["name"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    mount = next((m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in claims), None)
    if mount is None:
        raise TargetError(f"cronjob/{name} mounts no PersistentVolumeClaim: shards read and write on a volume; "
                          "add one to its pod (see k8s/base/batch-cronjob.yaml)")
    return _Template(name, spec, cron["metadata"].get("labels", {}), mount.rstrip("/"))


class _FilesPod:
    """A pod of the batch image with the data volume mounted, for copying files in and out. It
    sleeps for a bounded time and is deleted when the run ends, whichever way it ends."""

    def __init__(self, namespace: str, template: _Template, run: str, lifetime_s: float) -> None:
        self.namespace = namespace
        self.name = f"{template.name}-files-{run}"
        pod = copy.deepcopy(template.job_spec["template"]["spec"])
        container = pod["containers"][0]
        container.update(name="files", command=["sleep", str(int(lifetime_s))], args=[],
                         resources={"requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"cpu": "500m", "memory": "128Mi"}})
        container.pop("env", None)
        # sleep as PID 1 ignores SIGTERM: nothing to finish, so no grace period to wait out.
        pod.update(containers=[container], restartPolicy="Never", activeDeadlineSeconds=int(lifetime_s),
                   terminationGracePeriodSeconds=0)
        labels = {**template.labels, "app.kubernetes.io/component": "batch-files", RUN_LABEL: run}
        self.manifest = {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": self.name, "namespace": namespace, "labels": labels}, "spec": pod}

    def __enter__(self) -> "_FilesPod":
        if not cluster.wait_gone("Pod", self.namespace, cluster.delete("Pod", self.namespace, self.name), 120):
            raise TargetError(f"pod/{self.name} in {self.namespace}, left by an earlier run, was not gone within 120 s")
        cluster.create(self.manifest)

        def started(pods: list[dict]) -> str | None:
            for pod in pods:
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in pod.get("status", {}).get("conditions") or []):
                    return "ready"
                if pod.get("status", {}).get("phase") in ("Failed", "Succeeded"):
                    return "ended"
            return None

        if cluster.watch_until(f"pod {self.name} in namespace {self.namespace}", cluster.core().list_namespaced_pod,
                               self.namespace, started, 180, field_selector=f"metadata.name={self.name}") != "ready":
            why = self._why()
            self.__exit__()
            raise TargetError(f"pod/{self.name}, which copies the batch files, did not start: {why}")
        return self

    def _why(self) -> str:
        """What keeps the pod from starting, in the cluster's words; a claim without a volume first."""
        for volume in self.manifest["spec"].get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            pvc = cluster.get("PersistentVolumeClaim", claim, self.namespace) if claim else None
            if pvc and pvc.get("status", {}).get("phase") != "Bound":
                return (f"its volume claim {claim} is {pvc['status'].get('phase', 'Pending')}: the cluster offers no "
                        "volume for it (give it a default StorageClass, or name one in the claim; the local "
                        "cluster's scripts/cluster/up offers static local volumes)")
        events = cluster.list_objects("Event", self.namespace, fields=f"involvedObject.name={self.name}")
        return " ".join(e.get("message", "") for e in events).strip()[-500:] or "no event says why"

    def __exit__(self, *exc: object) -> None:
        try:
            cluster.delete("Pod", self.namespace, self.name)
        except cluster.ClusterError:  # it ends by its own deadline anyway; the run's outcome matters more
            pass

    def sh(self, script: str, timeout: float = 120) -> str:
        return kubectl.exec_in(self.namespace, self.name, ["sh", "-c", script], timeout=timeout)

    def put(self, folder: Path, into: str) -> None:
        """Replaces `into` on the volume with the contents of `folder`."""
        with tempfile.TemporaryFile() as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for path in sorted(folder.iterdir()):
                    tar.add(path, arcname=path.name)
            archive.seek(0)
            kubectl.exec_in(self.namespace, self.name,
                            ["sh", "-c", f"rm -rf {shlex.quote(into)} && mkdir -p {shlex.quote(into)}/out && "
                                         f"tar -x -C {shlex.quote(into)}"], stdin=archive, timeout=COPY_TIMEOUT_S)

    def get(self, folder: str, into: Path) -> None:
        with tempfile.TemporaryFile() as archive:
            kubectl.exec_in(self.namespace, self.name, ["tar", "-c", "-C", folder, "."], stdout=archive,
                            timeout=COPY_TIMEOUT_S)
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r") as tar:
                tar.extractall(into, filter="data")


def _indexes(text: str | None) -> set[int]:
    """The Job status's index ranges ("0,2-4") as a set."""
    found: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def _job(template: _Template, name: str, namespace: str, run: str, run_dir: str, shards: int, parallelism: int,
         retries: int, deadline_s: float, in_suffix: str, out_suffix: str) -> dict:
    spec = copy.deepcopy(template.job_spec)
    spec.pop("backoffLimit", None)  # per shard instead: one bad shard does not use up the others' retries
    # A replacement starts only once the pod it replaces has gone: two pods of one shard never
    # write the same files.
    spec.update(completionMode="Indexed", completions=shards, parallelism=min(parallelism, shards),
                backoffLimitPerIndex=retries, activeDeadlineSeconds=int(deadline_s), podReplacementPolicy="Failed")
    container = spec["template"]["spec"]["containers"][0]
    container["command"] = ["/bin/sh", "-c", SHARD_SCRIPT, "shard", *container["command"]]
    container["args"] = []
    container["env"] = [*container.get("env", []), {"name": "SHIPYARD_BATCH_RUN", "value": run_dir},
                        {"name": "SHIPYARD_BATCH_IN", "value": in_suffix},
                        {"name": "SHIPYARD_BATCH_OUT", "value": out_suffix}]
    labels = {**template.labels, RUN_LABEL: run}
    spec["template"].setdefault("metadata", {}).setdefault("labels", {})[RUN_LABEL] = run
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


def _shard_pods(namespace: str, job: str) -> list[tuple[int, dict]]:
    """The Job's pods with their shard index, oldest first."""
    pods = cluster.list_objects("Pod", namespace, labels=f"batch.kubernetes.io/job-name={job}")
    return [(int(index), pod) for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])
            if (index := pod["metadata"].get("labels", {}).get("batch.kubernetes.io/job-completion-index")) is not None]


def _progress_of_running(namespace: str, job: str, finished: dict[str, dict]) -> dict[int, dict]:
    """The last progress line of each shard's newest pod (what it has scored so far). A pod that
    has succeeded says no more: its last line is kept in `finished` and its log not read again."""
    newest = {index: pod for index, pod in _shard_pods(namespace, job)
              if pod["status"].get("phase") in ("Running", "Succeeded")}
    progress: dict[int, dict] = {}
    for index, pod in newest.items():
        name = pod["metadata"]["name"]
        if name in finished:
            progress[index] = finished[name]
            continue
        log = cluster.pod_logs(namespace, pod, tail=5)
        for line in reversed(log.splitlines()):
            if line.startswith("{"):
                try:
                    progress[index] = json.loads(line)
                    break
                except ValueError:
                    continue
        if pod["status"].get("phase") == "Succeeded" and index in progress:
            finished[name] = progress[index]
    return progress


def _failure_logs(namespace: str, job: str, indexes: set[int]) -> str:
    lines = []
    for index, pod in _shard_pods(namespace, job):
        if index in indexes and pod["status"].get("phase") == "Failed":
            log = cluster.pod_logs(namespace, pod, tail=8)
            lines.append(f"--- shard {index}, pod {pod['metadata']['name']}:\n{log.rstrip()}")
    return "\n".join(lines[-6:])


def run_batch_job(target: KubernetesTarget, source: Path, output: Path, rejects: Path, shards: int | None = None,
                  resume: bool = False, progress: Callable[[str], None] = lambda _: None,
                  timeout_s: float = 3600) -> BatchJobResult:
    """Scores SOURCE into OUTPUT (and REJECTS) with an Indexed Job; see the module's docstring."""
    try:
        check_formats(source, output)
    except ShardError as exc:
        raise TargetError(str(exc)) from exc
    settings = target.env.batch
    wanted = shards or settings.shards
    ns = target.namespace
    template = _template(ns, target.project.kubernetes.batch_cronjob)
    started = time.monotonic()
    run = run_id(source, wanted, output)
    run_dir = f"{template.mount}/{RUNS_FOLDER}/{run}"
    with tempfile.TemporaryDirectory(prefix="shipyard-batch-") as scratch, \
            _FilesPod(ns, template, run, timeout_s + 2 * COPY_TIMEOUT_S + 900) as files:
        local = Path(scratch)
        # A Job still running for this run (an interrupted CLI) must stop before its folder changes.
        stopping = cluster.delete("Job", ns, labels=f"{RUN_LABEL}={run}", cascade="Foreground")
        if not cluster.wait_gone("Job", ns, stopping, 180):
            raise TargetError(f"job(s) {', '.join(stopping)} of run {run} in {ns} were not gone within 180 s")
        if resume:
            text = files.sh(f"cat {shlex.quote(run_dir)}/manifest.json 2>/dev/null || true")
            if not text.strip():
                raise TargetError(f"nothing to resume: no unfinished run of {source} with {wanted} shards into a "
                                  f"{output.suffix} file is on the volume (a run is removed once merged); "
                                  "run again without --resume")
            plan = read_manifest(text)
            done = files.sh(f"ls {shlex.quote(run_dir)}/out").split()
            complete = sorted(int(n[:-5]) for n in done if re.fullmatch(r"\d+\.json", n))
            progress(f"resuming run {run}: shards {complete or 'none'} complete, "
                     f"{len(plan) - len(complete)} of {len(plan)} to run")
        else:
            progress(f"splitting {source.name} into {wanted} shards")
            plan = _stage(source, wanted, local / "stage")
            progress(f"{sum(s.rows for s in plan)} rows in {len(plan)} shards "
                     f"({', '.join(str(s.rows) for s in plan)}); copying them to the volume")
            files.put(local / "stage", run_dir)
        name = f"{template.name}-{datetime.now(timezone.utc):%m%d%H%M%S}-{os.getpid() % 1000}"
        job = _job(template, name, ns, run, run_dir, len(plan), settings.parallelism, settings.retries_per_shard,
                   timeout_s, source.suffix.lower(), output.suffix.lower())
        cluster.create(job)
        progress(f"job/{name}: {len(plan)} shards, {min(settings.parallelism, len(plan))} at a time, "
                 f"{settings.retries_per_shard} retries each")
        retried = _watch(ns, name, plan, timeout_s, progress)
        progress("every shard succeeded; merging their outputs")
        files.get(f"{run_dir}/out", local / "out")
        try:
            merged = merge(plan, local / "out", output, rejects)
        except ShardError as exc:
            raise TargetError(f"job/{name}: {exc}; nothing was written (the shards' outputs stay on the volume)") from exc
        files.sh(f"rm -rf {shlex.quote(run_dir)}")
        try:
            cluster.delete("Job", ns, name)
        except cluster.ClusterError:  # the result is merged and written; a Job left behind is only clutter
            pass
    return BatchJobResult(name, len(plan), merged.rows, merged.scored, merged.rejected, time.monotonic() - started,
                          retried)


def _stage(source: Path, shards: int, folder: Path) -> list[Shard]:
    """`folder/in`: the shards, each with its first row beside it (what SHARD_SCRIPT passes);
    `folder/manifest.json`: the plan a resumed run reads back."""
    plan = split(source, shards, folder / "in")
    for shard in plan:
        (folder / "in" / f"{shard.index}.first-row").write_text(str(shard.first_row))
    write_manifest(plan, folder / "manifest.json")
    return plan


def _watch(namespace: str, job: str, plan: list[Shard], timeout_s: float, progress: Callable[[str], None]) -> int:
    """Watches the Job until it completes (returns how many pods failed and were retried) or
    fails; the shards' progress, which lives in their logs, is read again every PROGRESS_EVERY_S."""
    last = [""]
    total = len(plan)
    finished: dict[str, dict] = {}

    def ended(jobs: list[dict]) -> int | None:
        if not jobs:
            raise TargetError(f"job/{job} was deleted before it finished; the shards it completed stay on the volume: "
                              "rerun the same command with --resume to run only the unfinished shards")
        status = jobs[0].get("status", {})
        conditions = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
        completed = _indexes(status.get("completedIndexes"))
        failed = _indexes(status.get("failedIndexes"))
        if "Complete" in conditions:
            return int(status.get("failed", 0))
        if "Failed" in conditions or "FailureTarget" in conditions:
            _fail(conditions.get("Failed") or conditions.get("FailureTarget") or {}, completed, failed)
        seen = _progress_of_running(namespace, job, finished)
        # A shard skipped as complete (a resumed run) printed no progress: its rows are its plan's.
        rows = sum(seen[s.index].get("rows", 0) if s.index in seen else s.rows if s.index in completed else 0
                   for s in plan)
        scored = sum(p.get("scored", 0) for p in seen.values())
        rejected = sum(p.get("rejected", 0) for p in seen.values())
        retries = f", {status['failed']} pod(s) failed and retried" if status.get("failed") else ""
        line = (f"shards {len(completed)}/{total} done, {status.get('active', 0)} running{retries}: "
                f"{rows} of {sum(s.rows for s in plan)} rows read, {scored} scored, {rejected} rejected")
        if line != last[0]:
            progress(line)
            last[0] = line
        return None

    def _fail(why: dict, completed: set[int], failed: set[int]) -> None:
        reason = f"{why.get('reason', 'timed out')}: {why.get('message', '')}".rstrip(": ")
        shards = f"shard(s) {sorted(failed)} failed every retry; " if failed else ""
        raise TargetError(f"job/{job} failed ({reason}); {shards}shards {sorted(completed) or 'none'} completed "
                          "and stay on the volume: rerun the same command with --resume to run only the "
                          f"unfinished shards\n{_failure_logs(namespace, job, failed)}")

    retried = cluster.watch_until(f"job {job} in namespace {namespace}", cluster.batch().list_namespaced_job,
                                  namespace, ended, timeout_s + 60, resync_s=PROGRESS_EVERY_S,
                                  field_selector=f"metadata.name={job}")
    if retried is None:
        found = cluster.get("Job", job, namespace) or {}
        status = found.get("status", {})
        _fail({}, _indexes(status.get("completedIndexes")), _indexes(status.get("failedIndexes")))
    return retried
