"""The `build` step: the Bento from bentofile.yaml, with the model version it packs."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

from shipyard.paths import PROJECT_ROOT

# What bentofile.yaml's include and docker template need; nothing else is copied into the context.
BUILD_CONTEXT = ("bentofile.yaml", "service", "docker")


class BuildError(Exception):
    """The Bento could not be built; the message says what to do."""


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    model_tag: str
    path: str


def latest_model_tag() -> str | None:
    import bentoml

    from service.model import MODEL_NAME

    try:
        return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None


def build_bento() -> BuiltBento:
    """Runs `bentoml build` through its Python API on the project's bentofile.yaml."""
    import bentoml

    model = latest_model_tag()
    if model is None:
        raise BuildError("no model in the store to pack: run `shipyard train` first")
    # A build context holding only what the Bento is made of: BentoML walks its whole context,
    # and the project's also holds .venv and the running cluster's containerd snapshots.
    with tempfile.TemporaryDirectory(prefix="shipyard-build-") as ctx:
        for item in BUILD_CONTEXT:
            source = PROJECT_ROOT / item
            if source.is_dir():
                shutil.copytree(source, Path(ctx) / item, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, Path(ctx) / item)
        # The exact version, as a Bento argument: serving the Bento later loads this one, not "latest".
        # BentoML reads the docker template only below the working directory: build from the context.
        with chdir(ctx):
            bento = bentoml.bentos.build_bentofile("bentofile.yaml", build_ctx=ctx, args={"model": model})
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)


def resolve_bento(tag: str = "fraud_scorer:latest") -> BuiltBento:
    """A Bento already in the store; BuildError names the fix when there is none."""
    import bentoml

    try:
        bento = bentoml.get(tag)
    except bentoml.exceptions.NotFound:
        raise BuildError(f"no Bento {tag!r} in the store: run `shipyard build` first") from None
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)
