"""`shipyard batch --target kubernetes`: one Job from the environment's batch CronJob template.

The toolkit owns the orchestration; the work is the project's batch entry point (shipyard.yaml
`hooks.batch`, the command the CronJob's container runs), called as
`<entry point> INPUT OUTPUT --rejects REJECTS --archive`. Its protocol with the toolkit: a JSON
summary line `{"rows": n, "scored": s, "rejected": r, ...}` on stdout, then its output files as
base64 of a tar.gz between the two ARCHIVE markers below.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from shipyard.project import current_project
from shipyard.targets.base import TargetError
from shipyard.targets.kubernetes import KubernetesTarget

ARCHIVE_BEGIN, ARCHIVE_END = "-----BEGIN SHIPYARD BATCH OUTPUTS-----", "-----END SHIPYARD BATCH OUTPUTS-----"
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
    from shipyard import kubectl

    cronjob = current_project().kubernetes.batch_cronjob
    if not cronjob:
        raise TargetError("this project names no batch CronJob: set kubernetes.batch_cronjob in shipyard.yaml")
    if not source.is_file():
        raise TargetError(f"input {source} does not exist")
    size = source.stat().st_size
    if size > BATCH_INPUT_LIMIT:
        raise TargetError(f"{source} is {size / 1024:.0f} KiB; a Job started by the CLI takes up to "
                          f"{BATCH_INPUT_LIMIT // 1024} KiB through a ConfigMap. Score it locally (shipyard batch "
                          "without --target kubernetes) or mount your storage in the CronJob's input volume")
    ns = target.namespace
    cron = kubectl.get_json("cronjob", cronjob, "-n", ns)
    if cron is None:
        raise TargetError(f"no cronjob/{cronjob} in {ns}: deploy the environment first (shipyard deploy)")
    started = time.monotonic()
    name = f"{cronjob}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{os.getpid() % 10000}"
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
    except ValueError as exc:
        raise TargetError(f"job/{name}: {exc}") from exc
    if summary["rows"] != summary["scored"] + summary["rejected"]:
        raise TargetError(f"job/{name} read {summary['rows']} rows but scored {summary['scored']} and rejected "
                          f"{summary['rejected']}")
    return BatchJobResult(name, summary["rows"], summary["scored"], summary["rejected"], time.monotonic() - started)


def unpack_archive(log: str, names: dict[str, Path]) -> None:
    """Writes each archived file to names[its name], renamed into place only when all are read."""
    if ARCHIVE_BEGIN not in log or ARCHIVE_END not in log:
        raise ValueError("the Job's log holds no complete outputs (it failed, or its log was truncated)")
    encoded = log.split(ARCHIVE_BEGIN, 1)[1].split(ARCHIVE_END, 1)[0]
    with tarfile.open(fileobj=io.BytesIO(base64.decodebytes(encoded.encode())), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if set(members) != set(names):
            raise ValueError(f"the Job returned {sorted(members)}, expected {sorted(names)}")
        partials = []
        for name, target in names.items():
            partial = target.with_name(target.name + ".partial")
            reader = tar.extractfile(members[name])
            assert reader is not None
            partial.write_bytes(reader.read())
            partials.append((partial, target))
    for partial, target in partials:
        os.replace(partial, target)
