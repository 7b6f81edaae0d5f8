"""The `build` step: the Bento from the project's bentofile, with the model versions it packs and
shipyard's serving layer (shipyard_serving) wrapped around the project's service.

The project's code imports nothing of shipyard: the build context gets a copy of the serving
layer and an entry module that imports the project's service, installs the layer on it and
exports it under its own name; the bentofile in the context points BentoML at that entry.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import tempfile
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

import yaml

from shipyard.project import PROJECT_FILE, Project, current_project

ENTRY_MODULE = "shipyard_entry"
WRAPPED_BENTOFILE = "shipyard-bentofile.yaml"


class BuildError(Exception):
    """The Bento could not be built; the message says what to do."""


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    model_tag: str
    path: str


def build_context(project: Project) -> list[Path]:
    """What the Bento is made of, from the bentofile itself: the bentofile, every file its
    `include` patterns match (BentoML's default, everything, when it has none), the files it names
    and the files at the project's top level. Only these are copied into the build context: BentoML
    walks its whole context, and a project folder also holds virtual environments and a running
    cluster's snapshots."""
    root = project.root
    data = project.bentofile_data()
    patterns = data.get("include") or ["**/*"]
    files = {project.path(project.bentofile)}
    for pattern in patterns:
        for match in glob.glob(pattern, root_dir=root, recursive=True):
            path = root / match
            if path.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                          for part in Path(match).parts):
                files.add(path.resolve())
    # The project folder's own files (not its folders): what a service's Python-defined image names
    # (`bentoml.images.Image(...).requirements_file("requirements.txt")`), pyproject.toml, lock files.
    files.update(path.resolve() for path in root.iterdir()
                 if path.is_file() and not path.name.startswith(".") and path.name != PROJECT_FILE)
    # Files the bentofile names besides `include` (BentoML reads them from the build context).
    named = [(data.get("docker") or {}).get("dockerfile_template"), (data.get("docker") or {}).get("setup_script"),
             (data.get("python") or {}).get("requirements_txt"), (data.get("conda") or {}).get("environment_yml")]
    for name in named:
        if name:
            files.add(project.path(name))
    missing = sorted(str(f) for f in files if not f.is_file())
    if missing:
        raise BuildError(f"the bentofile names files that do not exist: {', '.join(missing)}")
    return sorted(files)


def build_bento(project: Project | None = None) -> BuiltBento:
    """Runs `bentoml build` through its Python API on the project's bentofile."""
    import bentoml

    project = project or current_project()
    from shipyard_serving.compat import IncompatibleRelease, check_borrowed

    try:
        check_borrowed()
    except IncompatibleRelease as exc:
        raise BuildError(f"shipyard's serving layer cannot wrap a service on these releases: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="shipyard-build-") as ctx:
        for source in build_context(project):
            target = Path(ctx) / source.relative_to(project.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        bentofile = Path(ctx) / project.path(project.bentofile).relative_to(project.root)
        if bentofile.name == "pyproject.toml":  # its [tool.bentoml.build], wrapped, as a bentofile
            bentofile = bentofile.with_name(WRAPPED_BENTOFILE)
        _wrap_service(project, Path(ctx), bentofile)
        # BentoML reads the docker template only below the working directory: build from the context.
        with chdir(ctx):
            try:
                bento = bentoml.bentos.build_bentofile(str(bentofile), build_ctx=ctx)
            except bentoml.exceptions.NotFound as exc:
                train = " run `shipyard train` first, or" if "train" in project.hooks else ""
                raise BuildError(f"{exc}:{train} save the model the service loads to the model store") from None
    _record_build(str(bento.tag))
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)


def _build_record() -> Path:
    from shipyard.paths import state_dir

    return state_dir() / "last-build.json"


def _record_build(tag: str) -> None:
    """What BentoML named the Bento: later steps look it up by that name, never by a guess."""
    record = _build_record()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"tag": tag, "name": tag.split(":")[0]}))


def built_bento_name(project: Project) -> str:
    """The name of the Bento `shipyard build` last built for this project, or BentoML's rule for it
    when nothing was built here yet."""
    try:
        return str(json.loads(_build_record().read_text())["name"])
    except (OSError, ValueError, KeyError):
        return project.bento_name


def _wrap_service(project: Project, ctx: Path, bentofile: Path) -> None:
    """The serving layer and the entry module into the context; the bentofile pointed at them."""
    import shipyard_serving

    data = project.bentofile_data()
    module, _, name = str(data["service"]).partition(":")
    if not name:
        raise BuildError(f"{project.bentofile}: service must be module:Class, not {data['service']!r}")
    layer = Path(shipyard_serving.__file__).parent
    (ctx / "shipyard_serving").mkdir()
    for source in layer.glob("*.py"):
        shutil.copy2(source, ctx / "shipyard_serving" / source.name)
    extra = [f"{ENTRY_MODULE}.py", "shipyard_serving/*.py"]
    drop_image = ""
    if project.image.base == "debian":
        from shipyard import imagebase

        data["docker"] = {**(data.get("docker") or {}), **imagebase.docker_options(project, ctx)}
        extra.append(imagebase.TEMPLATE_IN_CONTEXT)
        if _image_into_build_options(ctx, module, name, data):
            extra.append(IMAGE_REQUIREMENTS)
            drop_image = ("# Its Python-defined image is in the build options now: the Bento is built on\n"
                          "# shipyard's base with shipyard's template, like any other.\n"
                          "_service.image = None\n")
    (ctx / f"{ENTRY_MODULE}.py").write_text(
        f'"""Written by `shipyard build`: {data["service"]} with shipyard\'s serving layer installed."""\n\n'
        f"import shipyard_serving\nfrom {module} import {name} as _service\n\n{drop_image}"
        f"{name} = shipyard_serving.install(_service)\n")
    data["service"] = f"{ENTRY_MODULE}:{name}"
    if data.get("include"):
        data["include"] = [*data["include"], *extra]
    bentofile.write_text(yaml.safe_dump(data, sort_keys=False))


IMAGE_REQUIREMENTS = "shipyard-image-requirements.txt"


def _image_into_build_options(ctx: Path, module: str, name: str, data: dict) -> bool:
    """A service whose runtime image is defined in Python (`@bentoml.service(image=bentoml.images.
    Image(...))`, BentoML's recommended style since 1.3.20) builds a "v2" Bento, whose Dockerfile
    is BentoML's own: it ignores the containerize template, so the image would not be built on
    shipyard's base (offline, non-root, the serving command). Its Python requirements, lock
    choice and commands (system packages included) go into the build options instead, and the
    entry module unsets the image: a v1 Bento, built as every other. True when there was one."""
    import importlib
    import sys

    sys.path.insert(0, str(ctx))
    try:
        with chdir(ctx):  # as BentoML imports it: `requirements_file("requirements.txt")` is relative
            image = getattr(getattr(importlib.import_module(module), name), "image", None)
    except Exception as exc:  # noqa: BLE001 - the build itself reports an import that fails
        logging.getLogger(__name__).debug("could not import %s:%s before the build: %s", module, name, exc)
        return False
    finally:
        sys.path.remove(str(ctx))
    if image is None:
        return False
    python = dict(data.get("python") or {})
    requirements = [image.python_requirements.strip()]
    if python.get("requirements_txt"):
        requirements.insert(0, (ctx / python["requirements_txt"]).read_text().strip())
    (ctx / IMAGE_REQUIREMENTS).write_text("\n".join(r for r in requirements if r) + "\n")
    python["requirements_txt"] = IMAGE_REQUIREMENTS
    python.setdefault("lock_packages", image.lock_python_packages)
    data["python"] = python
    # The first command is the distro's default (build tools, git): shipyard's base has what it needs.
    commands = [*image.commands[1:], *image.post_commands]
    if commands:
        script = ctx / "shipyard-image-setup.sh"
        script.write_text("#!/bin/sh\nset -e\n" + "\n".join(commands) + "\n")
        data["docker"] = {**(data.get("docker") or {}), "setup_script": script.name}
    return True


def resolve_bento(tag: str | None = None) -> BuiltBento:
    """A Bento already in the store (default: the project's latest); BuildError names the fix."""
    import bentoml

    tag = tag or f"{built_bento_name(current_project())}:latest"
    try:
        bento = bentoml.get(tag)
    except bentoml.exceptions.NotFound:
        raise BuildError(f"no Bento {tag!r} in the store: run `shipyard build` first") from None
    if not (Path(bento.path) / "src" / f"{ENTRY_MODULE}.py").is_file():
        # `bentoml build` makes a Bento without the serving layer: no published contract
        # (/docs.json), no admission control, no error contract; the suites would judge another server.
        raise BuildError(f"Bento {bento.tag} was built without shipyard's serving layer (by `bentoml build`?): "
                         "run `shipyard build`, which builds the same bentofile with it")
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)
