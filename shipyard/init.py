"""`shipyard init`: make an existing BentoML project a shipyard project, without touching its code.

Writes shipyard.yaml, a hardened Kubernetes base for the Bento (one Deployment serving it on
BentoML's port 3000, its Service, ServiceAccount without a token, PodDisruptionBudget,
HorizontalPodAutoscaler and default-deny NetworkPolicies, and a batch volume and Job template) and two environments, staging and
production, whose overlays only patch (namespace, replicas, autoscaler bounds) and whose
environment.yaml gates say what "good" means. Refuses to overwrite anything.
"""

from __future__ import annotations

import ast
import copy
import re
import socket
from pathlib import Path
from typing import Any

import yaml

from shipyard.podspec import container_security, pod_security
from shipyard.project import PROJECT_FILE, bento_name_of


class InitError(Exception):
    """This folder cannot be initialised as it is; the message says why and what to do."""


def _k8s_name(bento_name: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", bento_name.lower()).strip("-")[:40].strip("-")
    return name or "bento"


def _free_ports(count: int, start: int = 3100) -> list[int]:
    """Loopback ports nothing listens on now, from `start` up: each environment gets its own."""
    ports: list[int] = []
    port = start
    while len(ports) < count and port < 65000:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        port += 1
    return ports


def _dump(*docs: dict[str, Any], comment: str = "") -> str:
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    return head + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def _base(name: str, apis: list[str]) -> dict[str, str]:
    """k8s/base for one Bento: complete and valid on its own, hardened for the restricted profile."""
    labels = {"app.kubernetes.io/component": "api"}
    container = {
        "name": "bento", "image": name, "imagePullPolicy": "IfNotPresent",
        # shipyard's server for the Bento (it hands over to `bentoml serve` for what it cannot serve)
        "workingDir": "/home/bentoml/bento/src",
        "command": ["python", "-m", "shipyard_serving.server", "/home/bentoml/bento"],
        "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
        # Task APIs keep their results in SQLite under BentoML's home, on the read-only root
        # filesystem: here they go to the writable /tmp instead.
        "env": [{"name": "BENTOML_DO_NOT_TRACK", "value": "True"},
                {"name": "BENTOML_RESULT_STORE", "value": "/tmp/task_result.db"}],
        "startupProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2, "revisionHistoryLimit": 5, "minReadySeconds": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": name, "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": pod_security(fs_group=True),
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": labels}}],
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}}],
            }},
        },
    }
    files = {
        "serviceaccount.yaml": _dump({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name},
                                      "automountServiceAccountToken": False},
                                     comment="The pods' identity: they need no API access, so no token is mounted."),
        "deployment.yaml": _dump(deployment, comment=(
            "The Bento, served on port 3000 by shipyard's server. The image is pinned by digest at deploy time.\n"
            "maxUnavailable 0: a new pod must be Ready before an old one goes.")),
        "service.yaml": _dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                               "spec": {"type": "ClusterIP", "selector": labels,
                                        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
        "pdb.yaml": _dump({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
                           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}),
        "hpa.yaml": _dump({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
                           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                                    "minReplicas": 2, "maxReplicas": 4,
                                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                        "type": "Utilization", "averageUtilization": 70}}}]}}),
        "networkpolicy.yaml": _dump(
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": f"{name}-http"},
             "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http", "protocol": "TCP"}]}]}},
            comment="Nothing in or out by default; the API takes HTTP from pods of its own namespace."),
        "kustomization.yaml": _dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "labels": [{"pairs": {"app.kubernetes.io/name": name}, "includeSelectors": True},
                       {"pairs": {"app.kubernetes.io/managed-by": "shipyard"}}],
            "resources": ["serviceaccount.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml",
                          "networkpolicy.yaml", "batch-data.yaml", "batch-cronjob.yaml"],
        }, comment="The Bento's workload, complete and valid on its own; overlays (environments/<env>/) only patch."),
        **_batch(name, container, deployment["spec"]["template"]["spec"]["securityContext"], apis),
    }
    return {f"k8s/base/{file}": text for file, text in files.items()}


def _service_class(folder: Path, service: str) -> ast.ClassDef | None:
    """The service's class as its source declares it (nothing is imported: init runs before the
    first model is trained), or None when the source cannot be read or has no such class."""
    module, _, cls = service.partition(":")
    try:
        tree = ast.parse((folder / (module.replace(".", "/") + ".py")).read_text())
    except (OSError, SyntaxError):
        return None
    return next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls), None)


def _apis(folder: Path, service: str) -> list[str]:
    """The service's API names, in declaration order."""
    node = _service_class(folder, service)
    return [] if node is None else [
        item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any(_is_api(d) for d in item.decorator_list)]


def _is_api(decorator: ast.expr) -> bool:
    """`@bentoml.api`, `@bentoml.api(...)`, `@api` or `@api(...)`."""
    return _decorator_name(decorator) == "api"


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")


FILE_TYPES = ("Image", "Path", "UploadFile", "File")


def exercise_plan(folder: Path, service: str) -> list[str]:
    """How the built-in suites will exercise each API of the service, and what they will not,
    read from its source: a user learns it before the first verify, not from a failed one."""
    node = _service_class(folder, service)
    if node is None:
        return [f"(could not read {service.partition(':')[0]}: the APIs are listed by the first `shipyard verify`)"]
    lines = []
    for item in node.body:
        if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        kinds = {_decorator_name(d) for d in item.decorator_list} & {"api", "task"}
        if not kinds:
            continue
        params = [ast.unparse(a.annotation) for a in item.args.args[1:] if a.annotation is not None]
        answer = ast.unparse(item.returns) if item.returns is not None else ""
        how = ["smoke, contract, load and stress call it"]
        if any(t in p for p in params for t in FILE_TYPES):
            declared = any("ContentType" in p for p in params if any(t in p for t in FILE_TYPES))
            how.append("as multipart/form-data with " + ("a built-in file of the type its ContentType names"
                                                         if declared else "a built-in PNG in each file field "
                                                         "(add a samples file entry, \"@path/to/file\", for another kind)"))
        if "Generator" in answer or "Iterator" in answer:
            how.append("its streamed answer read to its end")
        if "task" in kinds:
            how.append("smoke submits a job, follows its status to the end and fetches the result")
        lines.append(f"  {item.name}: {'; '.join(how)}")
    for decorator in node.decorator_list:
        if _decorator_name(decorator) in ("asgi_app", "mount_asgi_app") and isinstance(decorator, ast.Call):
            path = next((ast.unparse(k.value) for k in decorator.keywords if k.arg == "path"), "/")
            lines.append(f"  the app mounted at {path}: only contract calls it (the routes BentoML's document lists "
                         "of it); smoke, load and stress do not")
    return lines


def _batch(name: str, api_container: dict[str, Any], pod_context: dict[str, Any], apis: list[str]) -> dict[str, str]:
    """The batch volume and the template of batch Jobs: shards of a file, each row a body for one API,
    answered in process by shipyard's generic entry point in the Bento's image."""
    def labels() -> dict[str, str]:  # a fresh dict per use: YAML would otherwise write anchors
        return {"app.kubernetes.io/component": "batch"}

    scheduled = "/data/scheduled/{}/$(JOB_COMPLETION_INDEX)"
    container = {
        "name": "batch", "image": api_container["image"], "imagePullPolicy": "IfNotPresent",
        "workingDir": "/home/bentoml/bento/src",
        "command": ["python", "-m", "shipyard_serving.batch", *(["--api", apis[0]] if apis else [])],
        "args": [scheduled.format("in") + ".csv", scheduled.format("out") + ".jsonl",
                 "--rejects", scheduled.format("out") + ".rejects.csv", "--summary", scheduled.format("out") + ".json"],
        "env": copy.deepcopy(api_container["env"]),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": copy.deepcopy(api_container["securityContext"]),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"{name}-batch", "labels": labels()},
        "spec": {"schedule": "0 2 * * *", "suspend": True, "concurrencyPolicy": "Forbid",
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"spec": {
                     "completionMode": "Indexed", "completions": 4, "parallelism": 4, "backoffLimitPerIndex": 2,
                     "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 3600,
                     "template": {"metadata": {"labels": labels()}, "spec": {
                         "restartPolicy": "Never", "serviceAccountName": name, "automountServiceAccountToken": False,
                         "securityContext": copy.deepcopy(pod_context), "containers": [container],
                         "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-batch-data"}},
                                     {"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}}]}}}}}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"{name}-batch-data",
                                                                               "labels": labels()},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}
    which = (f"Each row goes to the `{apis[0]}` API" + (f" (the service's APIs: {', '.join(apis)};\n"
                                                        "change --api to choose another)" if len(apis) > 1 else "")
             if apis else "Name the API rows go to with --api in the command")
    return {
        "batch-data.yaml": _dump(claim, comment=(
            "The batch volume: inputs split into shards and the shards' outputs until shipyard merges them.\n"
            "No storage class named: the cluster's default. Shards of several nodes need ReadWriteMany.")),
        "batch-cronjob.yaml": _dump(cronjob, comment=(
            "The template of batch Jobs: `shipyard batch IN OUT --target kubernetes --env <env>` splits IN into\n"
            "shards on the batch volume and runs an Indexed Job from it, one pod per shard. The command is\n"
            "shipyard's generic batch entry point, in process in the Bento's image.\n"
            f"{which}.\n"
            "Replace the command with your own entry point if you have one (the shard protocol is in\n"
            "shipyard/targets/batch.py). Scheduled runs (unsuspend it) score /data/scheduled/in/<i>.csv.")),
    }


def _environment(name: str, env: str, port: int, replicas: int, hpa: tuple[int, int]) -> dict[str, str]:
    namespace = f"{name}-{env}"[:63]
    staging = env == "staging"
    settings: dict[str, Any] = {"name": env, "target": "local", "namespace": namespace, "local": {"port": port}}
    if staging:
        settings.update({
            "parity": {"with": "production", "allow": ["spec.replicas", "namespace", "hpa.minReplicas", "hpa.maxReplicas"]},
            "promotion": {"to": "production", "requires_approval": True, "max_verdict_age_h": 24,
                          "post_deploy_suites": ["smoke"]},
            "suites": {"contract": {"examples": 100, "seed": 7},
                       "load": {"users": 8, "spawn_rate": 8, "duration_s": 20, "rps_per_user": 5},
                       "stress": {"start_rps": 10, "step_factor": 2, "step_s": 5, "overload_factor": 3,
                                  "overload_s": 15, "recovery_s": 15, "p95_ms_limit": 250}},
            "gates": {"smoke": {"failed": {"max": 0}, "apis_answered": {"min": 1}},
                      "contract": {"server_errors": {"max": 0}, "contract_failures": {"max": 0},
                                   "document_errors": {"max": 0}, "cases": {"min": 100}},
                      "load": {"error_rate": {"max": 0.001}, "p99_ms": {"max": 250}, "rps": {"min": 30}},
                      "stress": {"server_error_rate": {"max": 0.01}, "recovery_s": {"max": 10}}},
        })
    else:
        settings["gates"] = {"smoke": {"failed": {"max": 0}, "apis_answered": {"min": 1}}}
    environment = _dump(settings, comment=(
        f"What is not Kubernetes YAML about {env}: where it runs (target; the port on 127.0.0.1 locally,\n"
        "the namespace on Kubernetes), what \"good\" means (gates: a gate whose suite produced no data\n"
        "fails) and, for staging, what may differ from production and how promotion works."))
    kustomization = _dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": namespace,
        "resources": ["../../k8s/base", "namespace.yaml"],
        "patches": [
            {"target": {"kind": "Deployment", "name": name},
             "patch": f"- {{op: replace, path: /spec/replicas, value: {replicas}}}"},
            {"target": {"kind": "HorizontalPodAutoscaler", "name": name},
             "patch": f"- {{op: replace, path: /spec/minReplicas, value: {hpa[0]}}}\n"
                      f"- {{op: replace, path: /spec/maxReplicas, value: {hpa[1]}}}"},
        ],
    }, comment=f"{env.capitalize()}: patches only; anything else differing from its sibling fails `shipyard diff`.")
    namespace_doc = _dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.34",
        "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}}})
    return {f"environments/{env}/environment.yaml": environment,
            f"environments/{env}/kustomization.yaml": kustomization,
            f"environments/{env}/namespace.yaml": namespace_doc}


def _project_file(name: str, bentofile: str, samples: str | None) -> str:
    traffic = (f"traffic:\n  samples: {samples}               # example bodies per route: {{\"/route\": [body, ...]}}\n"
               if samples else
               "traffic:\n  # samples: samples.json   # example bodies per route: {\"/route\": [body, ...]}; without it,\n"
               "  #                          # the OpenAPI document's examples, else bodies generated from it\n"
               "  weights: {}\n")
    return (
        "# What shipyard cannot guess about this project (written by `shipyard init`; edit freely).\n"
        "# Every shipyard command finds this file by walking up from the working directory.\n"
        f"bentofile: {bentofile}\n"
        "environments: environments\n"
        "state: .shipyard                # models, Bentos, verdicts, local servers\n"
        "image:\n"
        f"  repository: {name}      # pushed as $SHIPYARD_REGISTRY/{name}, deployed by digest\n"
        "  base: debian              # the base image built here from Debian packages (no registry pull);\n"
        "                            # remove it to use the bentofile's docker.base_image instead\n"
        "kubernetes:\n"
        "  base: k8s/base\n"
        f"  image: {name}           # the Bento's image as k8s/base names it\n"
        f"  workload: {name}        # the Deployment serving the Bento\n"
        f"  service: {name}\n"
        "  port: 80\n"
        f"  batch_cronjob: {name}-batch    # `shipyard batch --target kubernetes` runs sharded Jobs from it\n"
        + traffic +
        "# hooks:                    # `shipyard <name> [args]` runs these, e.g.\n"
        "#   train: python -m mypackage.train\n"
        "# suites:                   # your own suites, run after smoke and gated like the built-in ones\n"
        "#   acceptance: {runner: pytest, path: tests/acceptance}\n"
    )


def init_project(folder: Path, bentofile: str | None = None) -> list[str]:
    """Writes the files and returns what to tell the user; InitError when it cannot."""
    from shipyard.project import ProjectError, find_build_file, read_build_options, read_project

    folder = folder.resolve()
    bentofile = bentofile or find_build_file(folder) or "bentofile.yaml"
    bento_path = folder / bentofile
    if not bento_path.is_file():
        raise InitError(f"no {bentofile} (nor a pyproject.toml with [tool.bentoml.build]) in {folder}: run `shipyard "
                        "init` in a BentoML project folder (the one you run `bentoml build` in)")
    try:
        data = read_build_options(bento_path)
    except ProjectError as exc:
        raise InitError(str(exc)) from None
    bento_name = bento_name_of(data)
    name = _k8s_name(bento_name)
    samples = "samples.json" if (folder / "samples.json").is_file() else None
    staging_port, production_port = _free_ports(2)
    apis = _apis(folder, str(data["service"]))
    files = {PROJECT_FILE: _project_file(name, bentofile, samples), **_base(name, apis),
             **_environment(name, "staging", staging_port, 1, (1, 2)),
             **_environment(name, "production", production_port, 2, (2, 4))}
    existing = sorted(path for path in files if (folder / path).exists())
    if existing:
        raise InitError(f"not overwriting what exists in {folder}: {', '.join(existing)} (move it away, or edit it by hand)")
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    try:
        read_project(folder / PROJECT_FILE)
    except ProjectError as exc:  # a bug here, not the user's: say so plainly
        raise InitError(f"shipyard init wrote an invalid {PROJECT_FILE}: {exc}") from None
    lines = [f"wrote {path}" for path in files]
    lines += ["", f"{bento_name}: staging on 127.0.0.1:{staging_port}, production on 127.0.0.1:{production_port} "
                  "(local target; namespaces for Kubernetes in each environment.yaml)"]
    plan = exercise_plan(folder, str(data["service"]))
    if plan:
        lines += ["how the built-in suites will exercise the service:", *plan]
    if not samples:
        lines.append("smoke, load and stress will send bodies generated from your APIs' schemas; for bodies like "
                     "your real traffic, add samples.json ({\"/route\": [body, ...]}) as shipyard.yaml traffic.samples")
    lines += ["next:", "  shipyard build", "  shipyard deploy staging", "  shipyard verify staging",
              "  shipyard promote staging --approve", "  shipyard history production",
              "add .shipyard/ to .gitignore: it holds models, Bentos, verdicts and servers' logs"]
    return lines
