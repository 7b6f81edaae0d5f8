"""The `image` step: Bento -> OCI image (bentoml containerize) -> registry -> digest.

Deployments refer to images by digest only, so this step's product is the repository digest the
registry itself reports, recorded with the Bento and model it was built from. A record is written
only after the push succeeded and the registry confirmed the digest: no half-pushed state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from shipyard.bento import BuildError, resolve_bento
from shipyard.paths import state_dir
from shipyard.project import command_line, current_project

DEFAULT_REGISTRY = "127.0.0.1:5000"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


class ImageError(Exception):
    """The image could not be built or pushed; the message names what to do (exit 1)."""


@dataclass(frozen=True)
class ImageRecord:
    bento: str
    model: str
    reference: str  # registry/repository@sha256:...
    tag: str
    size_bytes: int
    built_at: str
    build_seconds: float
    # shipyard.yaml's companions, each pinned by digest: name -> registry/repository@sha256:...
    companions: dict[str, str] = field(default_factory=dict)
    # With image.serving_lock: the same Bento on the full base, for batch Jobs, stream workers and
    # hooks (registry/<repository>-jobs@sha256:...); empty: the one image does everything.
    jobs_reference: str = ""
    # What runs the staged suites inside the cluster (shipyard.image_runner): the jobs image, the
    # harness and the project's suites (registry/<repository>-runner@sha256:...).
    runner_reference: str = ""

    @property
    def digest(self) -> str:
        return self.reference.rsplit("@", 1)[1]


def registry_address() -> str:
    return os.environ.get("SHIPYARD_REGISTRY", DEFAULT_REGISTRY)


def _records_file() -> Path:
    return state_dir() / "images.json"


def list_images() -> list[ImageRecord]:
    try:
        return [ImageRecord(**r) for r in json.loads(_records_file().read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _record(record: ImageRecord) -> None:
    records = [r for r in list_images() if r.reference != record.reference] + [record]
    path = _records_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records], indent=2))
    tmp.replace(path)


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, echo: Callable[[str], None] | None = None,
         cwd: Path | None = None) -> str:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})), cwd=cwd or current_project().root)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if echo and line.startswith(("Step ", "Successfully", "The push refers", "latest:", "v")):
            echo("  " + line.rstrip())
    if proc.wait() != 0:
        tail = "\n".join(lines[-25:])
        raise ImageError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return "\n".join(lines)


def check_docker() -> None:
    if shutil.which("docker") is None:
        raise ImageError("docker is not installed: run scripts/image/up (installs Debian's docker.io)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise ImageError("the docker engine is not running: run scripts/image/up (starts dockerd)")


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The digest the registry serves for repository:tag (Docker-Content-Digest of the manifest)."""
    req = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": _MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as exc:
        sep = "@" if tag.startswith("sha256:") else ":"
        raise ImageError(f"registry {registry} has no {repository}{sep}{tag} (HTTP {exc.code}): "
                         "build and push it with `shipyard image build`") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ImageError(f"registry {registry} is not answering ({exc}): run scripts/image/up") from exc


def check_registry(registry: str) -> None:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return  # answering, with auth: docker push will use the user's credentials
        raise ImageError(f"registry {registry} answered HTTP {exc.code} on /v2/") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ImageError(f"registry {registry} is not answering ({exc.__class__.__name__}): run scripts/image/up "
                         "or set SHIPYARD_REGISTRY to your registry") from exc


def ensure_base(bento_path: str, echo: Callable[[str], None], serving: bool = False) -> None:
    """With shipyard.yaml image.base: debian, the Bento's base image, built here (cached by recipe);
    with serving, the serving image's base (image.serving_lock, exactly)."""
    project = current_project()
    if project.image.base != "debian":
        return
    from shipyard import imagebase

    command, requirements = imagebase.build_command(project, bento_path, serving)
    what = "only what the server imports" if serving else "Debian packages, wheels downloaded here"
    echo(f"ensuring the base image {imagebase.base_name(project, serving)}:py3.11 ({what})")
    try:
        echo(f"base image: {_run(command, 'building the base image').strip().splitlines()[-1]}")
    finally:
        requirements.unlink(missing_ok=True)


def build_companions(registry: str, echo: Callable[[str], None]) -> dict[str, str]:
    """Each companion's build command; its last output line is the pushed image, pinned by digest."""
    from shipyard.manifests import ImageRef

    pinned = {}
    for companion in current_project().companions:
        echo(f"ensuring the companion image {companion.name} ({' '.join(companion.build)})")
        out = _run(command_line(companion.build), f"building the companion {companion.name}",
                   env={"SHIPYARD_REGISTRY": registry}).strip().splitlines()
        reference = out[-1].strip() if out else ""
        try:
            ImageRef.parse(reference)
        except Exception as exc:  # noqa: BLE001 - said with the command's name below
            raise ImageError(f"companion {companion.name}: its build command must print name@sha256:... on its "
                             f"last line, printed {reference!r}") from exc
        pinned[companion.name] = reference
    return pinned


def build_image(bento_tag: str | None = None, registry: str | None = None,
                echo: Callable[[str], None] = lambda _: None) -> ImageRecord:
    """containerize -> push -> digest confirmed by the registry -> recorded."""
    registry = registry or registry_address()
    bento = resolve_bento(bento_tag)
    check_docker()
    check_registry(registry)
    ensure_base(bento.path, echo)
    project = current_project()
    lean = bool(project.image.serving_lock)
    if lean:
        ensure_base(bento.path, echo, serving=True)
    repository = project.image.repository
    version = bento.tag.split(":", 1)[1]
    image = f"{registry}/{repository}:{version}"
    started = time.monotonic()
    serving_args: dict[str, str] = {}
    if lean:
        from shipyard import imagebase

        serving_args = {"SHIPYARD_BASE": f"{imagebase.base_name(project, serving=True)}:py3.11",
                        "SHIPYARD_REQUIREMENTS": "base"}
    _containerize(bento.tag, image, serving_args, echo)
    if lean:
        _check_serving_image(image, echo)
    reference, size = _push_pinned(registry, repository, version, image, echo)
    jobs_reference, jobs_image = "", image  # without a serving lock, the one image does everything
    if lean:
        jobs_image = f"{registry}/{project.image.jobs_repository}:{version}"
        _containerize(bento.tag, jobs_image, {}, echo)
        jobs_reference, _ = _push_pinned(registry, project.image.jobs_repository, version, jobs_image, echo)
    from shipyard.image_runner import RunnerImageError, build_runner_image

    runner_image = f"{registry}/{project.image.runner_repository}:{version}"
    try:
        build_runner_image(jobs_image, runner_image, echo)
    except RunnerImageError as exc:
        raise ImageError(str(exc)) from None
    runner_reference, _ = _push_pinned(registry, project.image.runner_repository, version, runner_image, echo)
    companions = build_companions(registry, echo)
    record = ImageRecord(
        bento=bento.tag, model=bento.model_tag, reference=reference, tag=image,
        size_bytes=size, built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 1), companions=companions, jobs_reference=jobs_reference,
        runner_reference=runner_reference,
    )
    _record(record)
    return record


def _containerize(bento_tag: str, image: str, build_args: dict[str, str], echo: Callable[[str], None]) -> None:
    echo(f"containerizing {bento_tag} as {image}" + (f" on {build_args['SHIPYARD_BASE']}" if build_args else ""))
    # containerize copies the Bento to a temporary folder and reads a dockerfile_template only
    # below its working directory and outside hidden folders: run it from a scratch folder in the
    # system temp dir that is also its TMPDIR.
    options = [f"--opt=build-arg={key}={value}" for key, value in build_args.items()]
    with tempfile.TemporaryDirectory(prefix="shipyard-containerize-") as scratch:
        _run([sys.executable, "-m", "bentoml", "containerize", bento_tag, "--image-tag", image, *options],
             "bentoml containerize", env={"DOCKER_BUILDKIT": "0", "TMPDIR": scratch}, echo=echo, cwd=Path(scratch))


def _check_serving_image(image: str, echo: Callable[[str], None]) -> None:
    """Starts the Bento's service inside the serving image (model loaded, no socket): a package the
    service needs and image.serving_lock lacks fails the build here, not a pod's start."""
    echo(f"checking that {image} serves the Bento (shipyard_serving.server --check)")
    result = subprocess.run(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none",
                             "-w", "/home/bentoml/bento/src", "--entrypoint", "python", image,
                             "-m", "shipyard_serving.server", "--check", "/home/bentoml/bento"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-12:])
        raise ImageError(f"the serving image cannot serve the Bento (a package missing from image.serving_lock?):\n{tail}")
    echo(f"  {result.stdout.strip().splitlines()[-1] if result.stdout.strip() else 'ok'}")


def _push_pinned(registry: str, repository: str, version: str, image: str,
                 echo: Callable[[str], None]) -> tuple[str, int]:
    """Pushes `image`; its reference by the digest the registry confirms, and its size."""
    echo(f"pushing {image}")
    _run(["docker", "push", image], "docker push", echo=echo)
    digest = registry_digest(registry, repository, version)
    if not DIGEST_RE.match(digest or ""):
        raise ImageError(f"registry {registry} returned no usable digest for {image}: {digest!r}")
    local = subprocess.run(["docker", "image", "inspect", "-f", "{{json .RepoDigests}}", image],
                           capture_output=True, text=True, check=True).stdout
    if digest not in local:
        raise ImageError(f"the registry's digest {digest} differs from docker's {local.strip()}")
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                              capture_output=True, text=True, check=True).stdout.strip())
    return f"{registry}/{repository}@{digest}", size


__all__ = ["BuildError", "ImageError", "ImageRecord", "build_image", "list_images", "registry_digest"]


def resolve_deployable(reference: str | None) -> tuple[str, dict[str, str]]:
    """The image to deploy (given, or the last one built) once its registry confirms the digest,
    with the Bento and model it carries as annotations when shipyard built it."""
    from shipyard.manifests import ANNOTATION_JOBS_IMAGE, ANNOTATION_RUNNER_IMAGE, ImageRef, companion_annotation

    if reference is None:
        records = list_images()
        if not records:
            raise ImageError("no image built yet: run `shipyard image build` (or pass --image name@sha256:...)")
        reference = records[-1].reference
    ref = ImageRef.parse(reference)
    registry, _, repository = ref.name.partition("/")
    if not repository:
        raise ImageError(f"image {reference!r} names no registry: use host:port/repository@sha256:...")
    served = registry_digest(registry, repository, ref.digest)
    if served != ref.digest:
        raise ImageError(f"registry {registry} serves {served} for {ref.digest}")
    record = next((r for r in list_images() if r.reference == str(ref)), None)
    notes = {"shipyard.dev/bento": record.bento, "shipyard.dev/model": record.model} if record else {}
    project = current_project()
    if record and record.jobs_reference:
        notes[ANNOTATION_JOBS_IMAGE] = record.jobs_reference  # built from the same Bento, in the same run
    if record and record.runner_reference:
        notes[ANNOTATION_RUNNER_IMAGE] = record.runner_reference
    # Else the Kubernetes target looks for it where the image runs (KubernetesTarget._with_jobs_image).
    # Companions do not depend on the Bento: an image built elsewhere gets the latest ones built here.
    for companion in project.companions:
        pinned = next((r.companions[companion.name] for r in ([record] if record else []) + list_images()[::-1]
                       if companion.name in r.companions), "")
        if pinned:
            notes[companion_annotation(companion.name)] = pinned
    return str(ref), notes
