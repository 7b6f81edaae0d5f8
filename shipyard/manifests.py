"""Render, validate, scan and compare the Kubernetes manifests of an environment.

Rendering is kustomize (kubectl's built-in) on the environment's overlay, wrapped in a throwaway
kustomization that pins the image by digest through `images:` - the only thing a deploy or a
promotion changes. Everything here runs before anything touches a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from shipyard import kubectl
from shipyard.config import Environment, environments_dir
from shipyard.project import current_project

# Each companion's image (shipyard.yaml `companions`) travels with the Bento's image record as an
# annotation, so a promotion deploys the very companion images the verdict was given with.
ANNOTATION_COMPANION = "shipyard.dev/companion-"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
KUBERNETES_VERSION = "1.34.0"
CHECKOV_VERSION = "3.3.30"


class ManifestError(Exception):
    """The manifests do not render, validate, scan clean or keep parity (exit code 1)."""


@dataclass(frozen=True)
class ImageRef:
    name: str
    digest: str

    @classmethod
    def parse(cls, reference: str) -> "ImageRef":
        if "@" not in reference:
            raise ManifestError(f"image {reference!r} is not pinned by digest: use name@sha256:<64 hex>")
        name, digest = reference.rsplit("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ManifestError(f"image {reference!r}: the digest must be sha256:<64 hex>")
        return cls(name, digest)

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}"


def overlay_dir(env_name: str) -> Path:
    path = environments_dir() / env_name
    if not (path / "kustomization.yaml").is_file():
        raise ManifestError(f"environment {env_name!r} has no kustomization.yaml in {path}")
    return path


# The jobs image (image.serving_lock) travels the same way: a promotion deploys the jobs image built
# from the same Bento as the serving image the verdict was given for.
ANNOTATION_JOBS_IMAGE = "shipyard.dev/jobs-image"
# And the runner image built with them: what `shipyard verify --target kubernetes` runs the suites in.
ANNOTATION_RUNNER_IMAGE = "shipyard.dev/runner-image"


def companion_annotation(name: str) -> str:
    return ANNOTATION_COMPANION + name


def render(env_name: str, image: ImageRef | None = None, annotations: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The environment's objects, images pinned by digest (a placeholder digest when none)."""
    project = current_project()
    image = image or ImageRef(project.kubernetes.image, PLACEHOLDER_DIGEST)
    annotations = annotations or {}
    images = [{"name": project.kubernetes.image, "newName": image.name, "digest": image.digest}]
    if project.kubernetes.jobs_image:
        # The jobs image built with the serving image, or the serving image itself when there is one.
        jobs = ImageRef.parse(annotations[ANNOTATION_JOBS_IMAGE]) if ANNOTATION_JOBS_IMAGE in annotations else image
        images.append({"name": project.kubernetes.jobs_image, "newName": jobs.name, "digest": jobs.digest})
    for companion in project.companions:
        key = companion_annotation(companion.name)
        pinned = ImageRef.parse(annotations[key]) if key in annotations else ImageRef(companion.image, PLACEHOLDER_DIGEST)
        images.append({"name": companion.image, "newName": pinned.name, "digest": pinned.digest})
    with tempfile.TemporaryDirectory(prefix="shipyard-render-") as tmp:
        wrapper: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize refuses absolute paths to bases; a relative one from the scratch folder works.
            "resources": [os.path.relpath(overlay_dir(env_name), tmp)],
            "images": images,
        }
        if annotations:
            wrapper["patches"] = [{
                "target": {"kind": "Deployment"},
                "patch": json.dumps([{"op": "add", "path": f"/metadata/annotations/{k.replace('/', '~1')}", "value": v}
                                     for k, v in annotations.items()]),
            }]
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(wrapper))
        result = kubectl.kustomize(tmp)
    if result.returncode != 0:
        raise ManifestError(f"kustomize could not render {env_name}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def keep_autoscaled_replicas(objects: list[dict[str, Any]], live: dict[str, int]) -> list[dict[str, Any]]:
    """The objects with each autoscaled Deployment's replicas left where its HPA put them.

    The manifests' `replicas` is where a workload starts; once it runs, a HorizontalPodAutoscaler
    in the same release owns the count. Re-applying the manifests' number would scale a busy
    service down on every deploy (and the HPA would scale it up again). `live` maps a running
    Deployment's name to its replicas; a new Deployment starts at the manifests' number. The kept
    value is clamped to the HPA's bounds, so changing those in the manifests still takes effect."""
    bounds = {o["spec"]["scaleTargetRef"]["name"]: (o["spec"].get("minReplicas", 1), o["spec"]["maxReplicas"])
              for o in objects if o.get("kind") == "HorizontalPodAutoscaler"
              and o["spec"].get("scaleTargetRef", {}).get("kind") == "Deployment"}
    kept = []
    for obj in objects:
        name = obj.get("metadata", {}).get("name")
        if obj.get("kind") == "Deployment" and name in bounds and name in live:
            low, high = bounds[name]
            obj = {**obj, "spec": {**obj["spec"], "replicas": min(max(live[name], low), high)}}
        kept.append(obj)
    return kept


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def validate(objects: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> None:
    """Every object against the cluster version's OpenAPI schemas (strict: no unknown fields)."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top level)"
            problems.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc}")
    if problems:
        raise ManifestError("schema validation failed (Kubernetes " + version + "):\n  " + "\n  ".join(problems))


def scanner_path() -> str:
    """checkov from a virtual environment of its own under the cache, installed on first use: its
    pins conflict with BentoML's (packaging, python-dateutil), so it never shares the project's."""
    explicit = os.environ.get("SHIPYARD_CHECKOV")
    if explicit:
        return explicit
    from shipyard.paths import cache_dir, filled_once

    venv = filled_once(cache_dir() / "tools" / f"checkov-{CHECKOV_VERSION}", _install_scanner)
    return str(venv / "bin" / "checkov")


def _install_scanner(venv: Path) -> None:
    import shutil
    import sys

    print(f"installing checkov {CHECKOV_VERSION} into {venv}", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)  # a venv half-built by a run that was killed
    python = shutil.which("python3") or sys.executable
    for cmd in ([python, "-m", "venv", str(venv)],
                [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                 f"checkov=={CHECKOV_VERSION}"]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise ManifestError(f"could not install the scanner ({' '.join(cmd)}): {result.stderr.strip()[-800:]}")


def scan_exceptions() -> dict[str, str]:
    """The checks the project skips on purpose (shipyard.yaml kubernetes.scan_exceptions), each with its reason."""
    project = current_project()
    if not project.kubernetes.scan_exceptions:
        return {}
    data = yaml.safe_load(project.path(project.kubernetes.scan_exceptions).read_text()) or {}
    return {e["check"]: e["reason"] for e in data.get("exceptions", [])}


@dataclass(frozen=True)
class ScanResult:
    passed: int
    failed: list[str]
    skipped: dict[str, str]


def scan(objects: list[dict[str, Any]]) -> ScanResult:
    """checkov's Kubernetes checks; any failure not written down in k8s/checkov-exceptions.yaml fails."""
    skipped = scan_exceptions()
    with tempfile.TemporaryDirectory(prefix="shipyard-scan-") as tmp:
        path = Path(tmp) / "rendered.yaml"
        path.write_text(to_yaml(objects))
        cmd = [scanner_path(), "-f", str(path), "--framework", "kubernetes", "-o", "json", "--quiet", "--compact"]
        if skipped:
            cmd += ["--skip-check", ",".join(skipped)]
        env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise ManifestError(f"the scanner gave no report: {result.stderr.strip()[-500:]}") from None
    if isinstance(report, list):
        report = report[0]
    summary = report.get("summary", {})
    if summary.get("parsing_errors"):
        raise ManifestError(f"the scanner could not parse {summary['parsing_errors']} rendered object(s)")
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']})"
              for c in report.get("results", {}).get("failed_checks", [])]
    return ScanResult(int(summary.get("passed", 0)), failed, skipped)


# --- parity ---------------------------------------------------------------------------------

_KIND_ALIASES = {"hpa": "HorizontalPodAutoscaler", "deployment": "Deployment", "pdb": "PodDisruptionBudget"}


@dataclass(frozen=True)
class Difference:
    obj: str
    path: str
    left: Any
    right: Any
    allowed: bool


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _flatten(sub, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _flatten(sub, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _generic_path(path: str) -> str:
    """spec.template.spec.containers[0].resources -> spec.template.spec.containers.resources"""
    import re

    return re.sub(r"\[\d+\]", "", path)


def _allowed(kind: str, path: str, allow: list[str]) -> bool:
    generic = _generic_path(path)
    for entry in allow:
        head, _, rest = entry.partition(".")
        if head in _KIND_ALIASES and rest:
            if kind != _KIND_ALIASES[head]:
                continue
            entry = rest
        if generic == entry or generic.startswith(entry + ".") or generic.endswith("." + entry) \
                or f".{entry}." in f".{generic}.":
            return True
    return False


def _index(objects: list[dict[str, Any]], namespace: str | None) -> dict[str, dict[str, Any]]:
    """Objects by kind/name, with the environment's namespace replaced by a placeholder."""
    text = json.dumps(objects)
    if namespace:
        text = text.replace(f'"{namespace}"', '"<namespace>"')
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in json.loads(text)}


def parity(left: Environment, right: Environment, allow: list[str]) -> list[Difference]:
    """Every difference between two environments' rendered objects, each marked allowed or not.

    Both are rendered with the same image, so only the manifests are compared. The namespace is
    compared as a placeholder when `namespace` is allowed.
    """
    ns_allowed = "namespace" in allow
    a = _index(render(left.name), left.namespace if ns_allowed else None)
    b = _index(render(right.name), right.namespace if ns_allowed else None)
    diffs: list[Difference] = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            diffs.append(Difference(key, "(object)", "present" if key in a else "absent",
                                    "present" if key in b else "absent", False))
            continue
        kind = key.split("/")[0]
        fa, fb = dict(_flatten(a[key])), dict(_flatten(b[key]))
        for path in sorted(set(fa) | set(fb)):
            if fa.get(path) != fb.get(path):
                diffs.append(Difference(key, path, fa.get(path), fb.get(path), _allowed(kind, path, allow)))
    return diffs
